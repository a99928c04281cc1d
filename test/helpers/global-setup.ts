import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '@jest/types';

const ROOT = path.resolve(__dirname, '..', '..');
/** Where multi-process and browser suites live: the service's and the client SDK's. */
const E2E_DIRS = [path.join('test', 'e2e'), path.join('client-sdk', 'test', 'e2e')];

/** The multi-process suites in this run; a run of only unit or integration tests needs no build. */
function selectedE2eFiles(globalConfig: Config.GlobalConfig): string[] {
  const files = E2E_DIRS.flatMap((dir) =>
    readdirSync(path.join(ROOT, dir))
      .filter((name) => name.endsWith('.test.ts'))
      .map((name) => path.join(dir, name)),
  );
  const pattern = globalConfig.testPathPattern;
  if (!pattern) return files;
  const matcher = new RegExp(pattern, 'i');
  return files.filter((file) => matcher.test(path.join(ROOT, file)));
}

/** `npm run build -w client-sdk`: dist/esm, dist/cjs and the browser bundle. */
const SDK_BUILD = path.join('client-sdk', 'scripts', 'build.mjs');
/** The demo page, which imports the built SDK package. */
const DEMO_BUILD = path.join('demo', 'build.mjs');

/**
 * What a suite loads beyond the compiled server, built by the same scripts `npm run build`
 * runs (esbuild and tsc: a few seconds), in this order, only when that suite is in the run.
 */
const SUITE_BUILDS: Record<string, string[]> = {
  [path.join('test', 'e2e', 'demo-page.test.ts')]: [SDK_BUILD, DEMO_BUILD],
  [path.join('client-sdk', 'test', 'e2e', 'browser-bundle.test.ts')]: [SDK_BUILD],
  [path.join('client-sdk', 'test', 'e2e', 'package.test.ts')]: [SDK_BUILD],
  [path.join('client-sdk', 'test', 'e2e', 'react-reload.test.ts')]: [SDK_BUILD],
  // Installs both packages as a consumer does.
  [path.join('test', 'e2e', 'consumer.test.ts')]: [SDK_BUILD],
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
 * Compiles `server/` once per jest run, as `npm run build` does (with the package's ESM entry),
 * so the e2e suites start the same `dist/server/main.js` that `npm start` runs (no on-the-fly
 * compiling in production), and builds what the selected browser and package suites load.
 */
export default function globalSetup(globalConfig: Config.GlobalConfig): void {
  const selected = selectedE2eFiles(globalConfig);
  if (selected.length === 0) return;
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  run([tsc, '-p', 'tsconfig.build.json'], 'npm run build (tsc -p tsconfig.build.json)');
  run([path.join(ROOT, 'server', 'build-esm-entry.mjs')], 'npm run build (node server/build-esm-entry.mjs)');
  const scripts = new Set(selected.flatMap((file) => SUITE_BUILDS[file] ?? []));
  for (const script of [SDK_BUILD, DEMO_BUILD].filter((build) => scripts.has(build))) {
    run([path.join(ROOT, script)], `npm run build (node ${script})`);
  }
}
