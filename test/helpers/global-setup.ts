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
 * Compiles `server/` once per jest run, as `npm run build` does, so the e2e suites start the
 * same `dist/server/main.js` that `npm start` runs (no on-the-fly compiling in production).
 */
export default function globalSetup(globalConfig: Config.GlobalConfig): void {
  if (selectedE2eFiles(globalConfig).length === 0) return;
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe' });
  } catch (error) {
    const output = (error as { stdout?: Buffer }).stdout?.toString() ?? '';
    throw new Error(`npm run build (tsc -p tsconfig.build.json) failed; the e2e suites need it:\n${output}`, {
      cause: error,
    });
  }
}
