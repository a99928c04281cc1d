import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * The done-when of the integrators' kit: a project of its own that depends on this repository
 * (`"timeline-service": "file:<repo>"`, `"@timeline/client": "file:<repo>/client-sdk"`) can
 * `require()` and `import` the service, run its own workflow through supertest and read the
 * stream with `parseTimeline`, with no environment variable set, and its TypeScript sees the
 * types through the packages' `exports`. Needs the build (test/helpers/global-setup.ts).
 */

const ROOT = path.resolve(__dirname, '..', '..');
const execFileAsync = promisify(execFile);

/** The consumer's own run: a workflow of its own, through supertest, the stream parsed. */
const scenario = (load: string) => `${load}

const greet = defineWorkflow({
  name: 'greet',
  params: z.object({ times: z.int().min(1).max(3) }),
  async run({ query, params }, ctx) {
    for (let i = 1; i <= params.times; i++) {
      await ctx.emit({ type: 'AGENT_MESSAGE', status: 'SUCCESS', message: 'Hello, ' + query + ' ' + i });
    }
    return { greeted: params.times };
  },
});

const service = createService({ workflows: [greet], config: { logLevel: 'silent' } });
const run = await request(service.app)
  .post('/execute')
  .send({ project_id: 'consumer', query: 'world', workflow: 'greet', params: { times: 2 } });
const stream = await request(service.app).get('/timeline/stream/' + run.body.session_id);
const refused = await request(service.app).post('/execute').send({ project_id: 'c', query: 'q', workflow: 'greet', params: { times: 9 } });
const timeline = parseTimeline(stream.text);
await service.close();
console.log(JSON.stringify({
  status: run.status,
  result: run.body.result,
  streamStatus: stream.status,
  ready: timeline.ready.status,
  messages: timeline.events.map((event) => event.message),
  done: timeline.done.status,
  refused: [refused.status, refused.body.error.code],
  config: { port: service.config.port, auth: service.config.apiKey, redis: service.config.redisUrl },
}));
`;

const CJS = scenario(`const request = require('supertest');
const { z } = require('zod');
const { createService, defineWorkflow } = require('timeline-service');
const { parseTimeline } = require('@timeline/client');
(async () => {`).replace(/\n$/, '\n})().catch((error) => { console.error(error); process.exit(1); });\n');

const ESM = scenario(`import request from 'supertest';
import { z } from 'zod';
import { createService, defineWorkflow } from 'timeline-service';
import { parseTimeline } from '@timeline/client';`);

/** Type checks through the `exports` maps, in both module kinds; `@ts-expect-error` lines must be errors. */
const TYPES = (load: string) => `${load}

const counter = defineWorkflow({
  name: 'counter',
  params: z.object({ to: z.number() }),
  async run(input, ctx: WorkflowContext) {
    const to: number = input.params.to;
    // @ts-expect-error params is typed from the schema: there is no 'from'.
    input.params.from;
    const step: StepDraft = { type: 'AGENT_MESSAGE', status: 'SUCCESS', message: String(to) };
    await ctx.emit(step);
    // @ts-expect-error not a type of the event model
    await ctx.emit({ type: 'THOUGHT', status: 'SUCCESS', message: 'x' });
    return { to };
  },
});
const service: Service = createService({ workflows: [counter], config: { maxRuns: 5 } });
const config: Config = service.config;
// @ts-expect-error config settings have their types
createService({ config: { maxRuns: '5' } });
const port: Promise<number> = service.listen(0);
const events: TimelineEvent[] = parseTimeline('').events;
const done: DonePayload | null = parseTimeline('').done;
const codes: ErrorCode[] = Object.keys(ERROR_CODES) as ErrorCode[];
void [config, port, events, done, codes, loadConfig];
`;

const TYPES_IMPORTS = `import { z } from 'zod';
import { createService, defineWorkflow, loadConfig, ERROR_CODES, type Config, type DonePayload, type ErrorCode, type Service, type StepDraft, type TimelineEvent, type WorkflowContext } from 'timeline-service';
import { parseTimeline } from '@timeline/client';`;

describe('a consumer project that depends on this repository', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-consumer-'));
    writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({
        name: 'timeline-consumer',
        private: true,
        dependencies: { 'timeline-service': `file:${ROOT}`, '@timeline/client': `file:${path.join(ROOT, 'client-sdk')}`, zod: '^4' },
        devDependencies: { supertest: '^7', typescript: '^5' },
      }),
    );
    // What `npm install` makes of `file:` directories: links. The registry packages are linked
    // from this repository's install, which has them (no network here).
    const modules = path.join(dir, 'node_modules');
    mkdirSync(path.join(modules, '@timeline'), { recursive: true });
    symlinkSync(ROOT, path.join(modules, 'timeline-service'), 'dir');
    symlinkSync(path.join(ROOT, 'client-sdk'), path.join(modules, '@timeline', 'client'), 'dir');
    for (const name of ['supertest', 'zod']) symlinkSync(path.join(ROOT, 'node_modules', name), path.join(modules, name), 'dir');
    writeFileSync(path.join(dir, 'check.cjs'), CJS);
    writeFileSync(path.join(dir, 'check.mjs'), ESM);
    writeFileSync(path.join(dir, 'types.mts'), TYPES(TYPES_IMPORTS));
    writeFileSync(path.join(dir, 'types.cts'), TYPES(TYPES_IMPORTS));
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: [] },
        files: ['types.mts', 'types.cts'],
      }),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs a consumer file with node, with no environment but PATH: the service must need none. */
  const runNode = async (file: string) => {
    const { stdout } = await execFileAsync(process.execPath, [file], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, timeout: 30000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!);
  };

  const expected = {
    status: 200,
    result: { greeted: 2 },
    streamStatus: 200,
    ready: 'completed',
    messages: ['Workflow greet started', 'Hello, world 1', 'Hello, world 2', 'Workflow greet completed'],
    done: 'completed',
    refused: [400, 'invalid_request'],
    config: { port: 3000, auth: null, redis: null },
  };

  it('require()s the service and the client, runs its own workflow through supertest and parses the stream', async () => {
    expect(await runNode('check.cjs')).toEqual(expected);
  });

  it('import()s them the same way (the ESM entry)', async () => {
    expect(await runNode('check.mjs')).toEqual(expected);
  });

  it('type-checks against the declarations the exports maps point to, from ESM and CommonJS', async () => {
    const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
    const errors = await execFileAsync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')], { cwd: dir, timeout: 170000 }).then(
      () => '',
      (error: { stdout?: string; stderr?: string; message: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}` || error.message,
    );
    expect(errors).toBe('');
    // A whole compile (zod's types are large): bounded, generously, for a loaded machine.
  }, 180000);
});
