// `npm run build`: the ESM build (dist/esm) and the CommonJS build (dist/cjs), each with its
// type declarations, then the size-checked browser bundle. See package.json's `exports`.
import { execFileSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { bundleBrowser } from './bundle-browser.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

await rm(new URL('../dist', import.meta.url), { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
}
// Inside this `"type": "module"` package, this marks dist/cjs's .js and .d.ts as CommonJS.
await writeFile(new URL('../dist/cjs/package.json', import.meta.url), '{ "type": "commonjs" }\n');
await bundleBrowser();
