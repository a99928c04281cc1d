// Builds the demo page served at `GET /` into dist/demo/ (beside the compiled server in
// dist/server/, which serves it from there): the page's script with the client SDK bundled in
// (the built package `@timeline/client`, as an app's bundler takes it), plus the HTML and CSS.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (file) => fileURLToPath(new URL(file, import.meta.url));
const outDir = fileURLToPath(new URL('../dist/demo/', import.meta.url));

await mkdir(outDir, { recursive: true });
await Promise.all([
  build({
    entryPoints: [here('main.ts')],
    outfile: `${outDir}main.js`,
    tsconfig: here('tsconfig.json'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    sourcemap: true,
    logLevel: 'warning',
  }),
  copyFile(here('index.html'), `${outDir}index.html`),
  copyFile(here('styles.css'), `${outDir}styles.css`),
]);
