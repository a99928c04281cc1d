import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '@jest/types';

const ROOT = path.resolve(__dirname, '..', '..');
const E2E_DIR = path.join(ROOT, 'test', 'e2e');

/** The multi-process suites in this run; a run of only unit or integration tests needs no build. */
function selectedE2eFiles(globalConfig: Config.GlobalConfig): string[] {
  const files = readdirSync(E2E_DIR)
    .filter((name) => name.endsWith('.test.ts'))
    .map((name) => path.join(E2E_DIR, name));
  const pattern = globalConfig.testPathPattern;
  if (!pattern) return files;
  const matcher = new RegExp(pattern, 'i');
  return files.filter((file) => matcher.test(file));
}

/**
 * Browser assets a suite loads, built by the same scripts `npm run build` runs (esbuild: well
 * under a second each), only when that suite is in the run.
 */
const BROWSER_BUILDS: Record<string, string> = {
  'demo-page.test.ts': path.join('demo', 'build.mjs'),
  'sdk-browser.test.ts': path.join('client-sdk', 'scripts', 'build.mjs'),
};

function run(args: string[], what: string): void {
  try {
    execFileSync(process.execPath, args, { cwd: ROOT, stdio: 'pipe' });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`${what} failed; the e2e suites need it:\n${stdout?.toString() ?? ''}${stderr?.toString() ?? ''}`, {
      cause: error,
    });
  }
}

/**
 * Compiles `server/` once per jest run, as `npm run build` does, so the e2e suites start the
 * same `dist/server/main.js` that `npm start` runs (no on-the-fly compiling in production),
 * and builds the browser assets of the selected browser suites.
 */
export default function globalSetup(globalConfig: Config.GlobalConfig): void {
  const selected = selectedE2eFiles(globalConfig);
  if (selected.length === 0) return;
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  run([tsc, '-p', 'tsconfig.build.json'], 'npm run build (tsc -p tsconfig.build.json)');
  for (const file of selected) {
    const script = BROWSER_BUILDS[path.basename(file)];
    if (script) run([path.join(ROOT, script)], `npm run build (node ${script})`);
  }
}
