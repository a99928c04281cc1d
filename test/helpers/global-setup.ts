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
  'sdk-browser.test.ts': path.join('client-sdk', 'scripts', 'bundle-browser.mjs'),
};

/** Suites that install the packages as a consumer does, and need the client SDK's package built too. */
const SDK_PACKAGE_BUILDS = new Set(['consumer.test.ts']);

function run(args: string[], what: string, command = process.execPath): void {
  try {
    execFileSync(command, args, { cwd: ROOT, stdio: 'pipe' });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`${what} failed; the e2e suites need it:\n${stdout?.toString() ?? ''}${stderr?.toString() ?? ''}`, {
      cause: error,
    });
  }
}

/**
 * Compiles `server/` once per jest run, as `npm run build` does (with the package's ESM entry),
 * so the e2e suites start the same `dist/server/main.js` that `npm start` runs (no on-the-fly
 * compiling in production), and builds the browser assets of the selected browser suites and
 * the client SDK's package for the consumer suite.
 */
export default function globalSetup(globalConfig: Config.GlobalConfig): void {
  const selected = selectedE2eFiles(globalConfig);
  if (selected.length === 0) return;
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  run([tsc, '-p', 'tsconfig.build.json'], 'npm run build (tsc -p tsconfig.build.json)');
  run([path.join(ROOT, 'server', 'build-esm-entry.mjs')], 'npm run build (node server/build-esm-entry.mjs)');
  for (const file of selected) {
    const script = BROWSER_BUILDS[path.basename(file)];
    if (script) run([path.join(ROOT, script)], `npm run build (node ${script})`);
    if (SDK_PACKAGE_BUILDS.has(path.basename(file))) {
      // The SDK's own build script, whatever it does: npm (the one running us, when there is one).
      const npmCli = process.env.npm_execpath;
      const args = ['run', 'build', '--workspace', 'client-sdk'];
      if (npmCli) run([npmCli, ...args], 'npm run build --workspace client-sdk');
      else run(args, 'npm run build --workspace client-sdk', 'npm');
    }
  }
}
