import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { range } from '../../../test/helpers/timeline-fixtures';
import { startService, type RunningService } from '../../../test/helpers/service';

/**
 * The built package (client-sdk/dist, built by jest's globalSetup as `npm run build` does) as
 * a consumer project gets it: packed with `npm pack`, unpacked into a project's node_modules
 * beside its dependencies, then loaded by `require` and by `import` in child Node processes,
 * each running a workflow on a real service, and compiled against by TypeScript for both.
 */

const run = promisify(execFile);
const SDK_DIR = path.resolve(__dirname, '..', '..');
const TSC = require.resolve('typescript/bin/tsc');
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface PackedFile {
  path: string;
}

let project: string;
let packed: string[];
let svc: RunningService;

/** A dependency as npm would install it in the consumer project (here: a link to ours). */
async function linkDependency(name: string): Promise<void> {
  const source = path.dirname(require.resolve(`${name}/package.json`, { paths: [SDK_DIR] }));
  const target = path.join(project, 'node_modules', name);
  await mkdir(path.dirname(target), { recursive: true });
  await symlink(source, target, 'dir');
}

beforeAll(async () => {
  project = await mkdtemp(path.join(os.tmpdir(), 'timeline-consumer-'));
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', project], { cwd: SDK_DIR });
  const [pack] = JSON.parse(stdout) as Array<{ filename: string; files: PackedFile[] }>;
  packed = pack.files.map((file) => file.path);
  const installed = path.join(project, 'node_modules', '@timeline', 'client');
  await mkdir(installed, { recursive: true });
  await run('tar', ['-xzf', path.join(project, pack.filename), '-C', installed, '--strip-components=1']);
  // Its dependencies, its optional peer (for ./react) and React's types (for the compile test).
  for (const name of ['uuid', 'eventsource-parser', 'react', '@types/react']) await linkDependency(name);
  await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  svc = await startService();
}, 60000);

afterAll(async () => {
  await svc?.close();
  if (project) await rm(project, { recursive: true, force: true });
});

/** Runs `source` as the consumer's file `name` with Node; returns what it printed as JSON. */
async function runConsumer(name: string, source: string): Promise<Record<string, unknown>> {
  await writeFile(path.join(project, name), source);
  const { stdout } = await run(process.execPath, [name, svc.url], { cwd: project, timeout: 30000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** The consumer's part: a synthetic run followed to `done`, what it saw, and where things came from. */
const RUN_A_WORKFLOW = `
  const client = new TimelineClient({ baseUrl: process.argv[2] });
  const run = client.execute({ project_id: 'consumer', query: 'q', workflow: 'synthetic', params: { events: 3 } });
  const seqs = [];
  for await (const event of run) seqs.push(event.seq);
  const result = await run.result;
  let failure;
  try {
    await client.history('00000000-0000-4000-8000-000000000000');
  } catch (error) {
    failure = { isTimelineError: error instanceof TimelineError, code: error.code };
  }
`;

it('require() loads the CommonJS build and runs a workflow to done; React is loaded only by ./react', async () => {
  const output = await runConsumer(
    'consumer.cjs',
    `const { TimelineClient, TimelineError } = require('@timeline/client');
    const reactLoaded = () => Object.keys(require.cache).some((file) => file.includes('/node_modules/react/'));
    (async () => {
      ${RUN_A_WORKFLOW}
      const reactBefore = reactLoaded();
      const { useTimeline } = require('@timeline/client/react');
      console.log(JSON.stringify({
        sessionId: run.sessionId, seqs, result, failure, reactBefore, reactAfter: reactLoaded(), hook: typeof useTimeline,
        core: require.resolve('@timeline/client'), react: require.resolve('@timeline/client/react'),
      }));
    })().catch((error) => { console.error(error); process.exit(1); });`,
  );
  expect(output).toMatchObject({
    seqs: range(1, 5),
    result: { events: 3 },
    failure: { isTimelineError: true, code: 'session_not_found' },
    reactBefore: false,
    reactAfter: true,
    hook: 'function',
  });
  expect(output.sessionId).toMatch(UUID_V4);
  expect(output.core).toMatch(/node_modules\/@timeline\/client\/dist\/cjs\/index\.js$/);
  expect(output.react).toMatch(/node_modules\/@timeline\/client\/dist\/cjs\/react\/index\.js$/);
}, 60000);

it('import loads the ESM build and runs a workflow to done', async () => {
  const output = await runConsumer(
    'consumer.mjs',
    `import { TimelineClient, TimelineError } from '@timeline/client';
    import { useTimeline } from '@timeline/client/react';
    ${RUN_A_WORKFLOW}
    console.log(JSON.stringify({
      sessionId: run.sessionId, seqs, result, failure, hook: typeof useTimeline,
      core: import.meta.resolve('@timeline/client'), react: import.meta.resolve('@timeline/client/react'),
    }));`,
  );
  expect(output).toMatchObject({
    seqs: range(1, 5),
    result: { events: 3 },
    failure: { isTimelineError: true, code: 'session_not_found' },
    hook: 'function',
  });
  expect(output.sessionId).toMatch(UUID_V4);
  expect(output.core).toMatch(/node_modules\/@timeline\/client\/dist\/esm\/index\.js$/);
  expect(output.react).toMatch(/node_modules\/@timeline\/client\/dist\/esm\/react\/index\.js$/);
}, 60000);

/** A consumer's TypeScript: the event union narrows, wrong accesses fail, both entry points typed. */
const TYPED_CONSUMER = `
  import { TimelineClient, TimelineError, type DonePayload, type TimelineEvent } from '@timeline/client';
  import { useTimeline, type UseTimelineResult } from '@timeline/client/react';

  export function line(event: TimelineEvent): string {
    switch (event.type) {
      case 'AGENT_TOKEN':
        return event.details.text;
      case 'ROUTER_THOUGHT':
        return event.details.route;
      case 'WORKFLOW_ERROR':
        return event.details.error.code;
      default:
        return event.message;
    }
  }
  // @ts-expect-error a token's details have no route
  export const wrong = (event: TimelineEvent) => event.type === 'AGENT_TOKEN' && event.details.route;
  export const outcome = (done: DonePayload) => (done.status === 'failed' ? done.error.code : done.status);
  export const client = new TimelineClient({ baseUrl: '' });
  export const isTimelineError = (error: unknown) => error instanceof TimelineError && error.code === 'session_conflict';
  export type Hook = UseTimelineResult<{ events: number }>;
  export const hook: (options: { baseUrl: string }) => Hook = useTimeline;
`;

it('ships declarations for import and for require (node16 resolution) that narrow the event union', async () => {
  const dir = path.join(project, 'typed');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'esm-consumer.mts'), TYPED_CONSUMER);
  await writeFile(path.join(dir, 'cjs-consumer.cts'), TYPED_CONSUMER);
  await writeFile(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'Node16',
        moduleResolution: 'Node16',
        target: 'ES2022',
        lib: ['ES2022', 'DOM'],
        types: [],
        strict: true,
        noEmit: true,
        // The package's own .d.ts files are compiled too.
        skipLibCheck: false,
      },
      files: ['esm-consumer.mts', 'cjs-consumer.cts'],
    }),
  );
  const compiled = await run(process.execPath, [TSC, '-p', dir, '--listFiles'], { cwd: dir, timeout: 60000 }).catch(
    (error: { stdout?: string }) => {
      throw new Error(`tsc failed:\n${error.stdout ?? String(error)}`);
    },
  );
  const files = compiled.stdout.split('\n');
  for (const entry of ['esm/index.d.ts', 'cjs/index.d.ts', 'esm/react/index.d.ts', 'cjs/react/index.d.ts']) {
    expect(files).toContainEqual(expect.stringMatching(new RegExp(`node_modules/@timeline/client/dist/${entry}$`)));
  }
}, 60000);

it('packs only the builds, their sources and the README, and every export target is in it', async () => {
  expect(packed.filter((file) => !/^(dist|src)\//.test(file) && !['package.json', 'README.md'].includes(file))).toEqual([]);
  expect(packed).toContain('README.md');
  const manifest = JSON.parse(await readFile(path.join(SDK_DIR, 'package.json'), 'utf8')) as { exports: unknown };
  const targets = JSON.stringify(manifest.exports).match(/"\.\/[^"]+"/g) ?? [];
  const files = targets.map((target) => target.slice(3, -1)).filter((file) => file.includes('.'));
  expect(files.length).toBeGreaterThanOrEqual(10);
  for (const file of files) {
    expect(packed).toContain(file);
    expect(existsSync(path.join(project, 'node_modules', '@timeline', 'client', file))).toBe(true);
  }
});
