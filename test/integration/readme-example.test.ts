// The README's example ("Test your workflow with supertest"), verbatim between the markers;
// the last test fails if the README and this file differ.
// README example: begin
import request from 'supertest';
import { z } from 'zod';
import { createService, defineWorkflow } from 'timeline-service';
import { parseTimeline } from '@timeline/client';

const greet = defineWorkflow({
  name: 'greet',
  params: z.object({ times: z.int().min(1).max(5).default(1) }),
  async run({ query, params }, ctx) {
    for (let i = 1; i <= params.times; i++) {
      await ctx.emit({ type: 'AGENT_MESSAGE', status: 'SUCCESS', message: `Hello, ${query}! (${i})` });
    }
    return { greeted: params.times };
  },
});

test('greet says hello twice, then completes', async () => {
  const service = createService({ workflows: [greet], config: { logLevel: 'silent' } });
  const run = await request(service.app)
    .post('/execute')
    .send({ project_id: 'demo', query: 'world', workflow: 'greet', params: { times: 2 } })
    .expect(200);
  const stream = await request(service.app).get(`/timeline/stream/${run.body.session_id}`).expect(200);
  const { events, done } = parseTimeline(stream.text);
  expect(events.map((event) => event.message)).toEqual([
    'Workflow greet started',
    'Hello, world! (1)',
    'Hello, world! (2)',
    'Workflow greet completed',
  ]);
  expect(done).toMatchObject({ status: 'completed', result: { greeted: 2 } });
  await service.close();
});
// README example: end

import { readFileSync } from 'node:fs';
import path from 'node:path';

test('the README shows this example verbatim', () => {
  const readme = readFileSync(path.resolve(__dirname, '..', '..', 'README.md'), 'utf8');
  const shown = /### Test your workflow with supertest\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  const source = readFileSync(__filename, 'utf8');
  const example = /\/\/ README example: begin\n([\s\S]*?)\/\/ README example: end/.exec(source)?.[1];
  expect(example).toBeDefined();
  expect(shown).toBe(example);
});
