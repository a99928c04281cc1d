import { ModelError, type Model } from '../../server/models/model';
import { cancelSession, executeAsync, metricSample, request } from '../helpers/api';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { execute, newSessionId, startRedisService, startService, synthetic, type RunningService } from '../helpers/service';
import { waitUntil } from '../helpers/wait';

/** A model whose calls last until the run is aborted (cancel, shutdown). */
const hanging: Model = {
  name: 'hanging',
  stream: (_request, { signal }) =>
    new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
};

/** A model that always fails the way an overloaded provider does. */
const overloaded: Model = {
  name: 'overloaded',
  async stream() {
    throw new ModelError('model_overloaded', 'The model provider is overloaded');
  },
};

const scrape = async (svc: RunningService) => (await request(`${svc.url}/metrics`)).text;
/** A sample's value, `0` when the series does not exist yet (a labelled histogram before its first observation). */
const sampleOr0 = (text: string, sample: string) => (text.split('\n').some((l) => l.startsWith(`${sample} `)) ? metricSample(text, sample) : 0);

describe('latency and run histograms (memory bus)', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ keepAliveMs: null });
  });
  afterAll(() => svc.close());

  it('execute-to-first-event and run duration move with each run, by workflow and outcome', async () => {
    const before = await scrape(svc);
    for (let i = 0; i < 2; i++) expect((await execute(svc.url, synthetic(newSessionId(), { events: 3 }))).status).toBe(200);
    const after = await scrape(svc);
    const moved = (sample: string) => sampleOr0(after, sample) - sampleOr0(before, sample);
    expect(moved('timeline_execute_to_first_event_seconds_count{workflow="synthetic"}')).toBe(2);
    expect(moved('timeline_run_duration_seconds_count{workflow="synthetic",outcome="completed"}')).toBe(2);
    expect(moved('timeline_run_duration_seconds_sum{workflow="synthetic",outcome="completed"}')).toBeGreaterThan(0);
    // A first event is in the log long before 10 s, and a synthetic run of 3 events ends within a minute.
    expect(moved('timeline_execute_to_first_event_seconds_bucket{le="10",workflow="synthetic"}')).toBe(2);
    expect(moved('timeline_run_duration_seconds_bucket{le="60",workflow="synthetic",outcome="completed"}')).toBe(2);
  });

  it('model calls: duration by model, purpose and outcome, and tokens by type', async () => {
    const before = await scrape(svc);
    const response = await execute(svc.url, { project_id: 'p1', query: 'Write a short poem about queues' });
    expect(response.status).toBe(200);
    const after = await scrape(svc);
    const moved = (sample: string) => sampleOr0(after, sample) - sampleOr0(before, sample);
    for (const purpose of ['route', 'writer']) {
      expect({ purpose, calls: moved(`timeline_model_call_duration_seconds_count{model="scripted",purpose="${purpose}",outcome="ok"}`) }).toEqual({ purpose, calls: 1 });
    }
    const usage = response.body.result.usage as { input_tokens: number; output_tokens: number };
    const tokens = (type: string) =>
      moved(`timeline_model_call_tokens_sum{model="scripted",purpose="route",type="${type}"}`) +
      moved(`timeline_model_call_tokens_sum{model="scripted",purpose="writer",type="${type}"}`);
    expect({ input: tokens('input'), output: tokens('output') }).toEqual({ input: usage.input_tokens, output: usage.output_tokens });
    expect(usage.output_tokens).toBeGreaterThan(0);
    expect(moved('timeline_run_duration_seconds_count{workflow="agents",outcome="completed"}')).toBe(1);
  });

  it('reports the bus up and, at first, every resume outcome and the gap counter at zero', async () => {
    const text = await scrape(svc);
    expect(metricSample(text, 'timeline_bus_up')).toBe(1);
    for (const outcome of ['resumed', 'gap', 'finished']) expect(metricSample(text, `timeline_stream_resumes_total{outcome="${outcome}"}`)).toBe(0);
    expect(metricSample(text, 'timeline_gaps_sent_total')).toBe(0);
    // Exported before any write, so a dashboard shows zero rather than nothing.
    expect(metricSample(text, 'timeline_publish_to_write_seconds_count')).toBe(0);
  });
});

describe('failed and cancelled model calls', () => {
  let failing: RunningService;
  let stuck: RunningService;
  beforeAll(async () => {
    failing = await startService({ keepAliveMs: null }, { model: overloaded });
    stuck = await startService({ keepAliveMs: null }, { model: hanging });
  });
  afterAll(async () => {
    await failing.close();
    await stuck.close();
  });

  it("labels a failed call with the provider's error code, and its run failed", async () => {
    expect((await execute(failing.url, { project_id: 'p1', query: 'hi' })).status).toBe(502);
    const text = await scrape(failing);
    expect(metricSample(text, 'timeline_model_call_duration_seconds_count{model="overloaded",purpose="route",outcome="model_overloaded"}')).toBe(1);
    expect(metricSample(text, 'timeline_run_duration_seconds_count{workflow="agents",outcome="failed"}')).toBe(1);
    // Tokens are counted for calls that answered only.
    expect(text).not.toContain('timeline_model_call_tokens_count{');
  });

  it('shows how long a running run has been silent, and labels a call its cancel aborted', async () => {
    const sessionId = newSessionId();
    expect(metricSample(await scrape(stuck), 'timeline_run_longest_idle_seconds')).toBe(0);
    expect((await executeAsync(stuck.url, { project_id: 'p1', query: 'hi', session_id: sessionId })).status).toBe(202);
    await waitUntil(async () => metricSample(await scrape(stuck), 'timeline_runs_active') === 1, { label: 'the run to be active' });
    // The run waits on its model: its silence grows from one scrape to the next.
    const first = metricSample(await scrape(stuck), 'timeline_run_longest_idle_seconds');
    await waitUntil(async () => metricSample(await scrape(stuck), 'timeline_run_longest_idle_seconds') > first, { label: 'the silence to grow' });
    expect(first).toBeGreaterThan(0);

    expect((await cancelSession(stuck.url, sessionId)).status).toBe(202);
    await waitUntil(async () => metricSample(await scrape(stuck), 'timeline_runs_active') === 0, { label: 'the run to end' });
    const text = await scrape(stuck);
    expect(metricSample(text, 'timeline_run_longest_idle_seconds')).toBe(0);
    expect(metricSample(text, 'timeline_model_call_duration_seconds_count{model="hanging",purpose="route",outcome="aborted"}')).toBe(1);
    expect(metricSample(text, 'timeline_run_duration_seconds_count{workflow="agents",outcome="cancelled"}')).toBe(1);
  });
});

describe('bus health (Redis)', () => {
  let redis: RedisServer;
  let svc: RunningService;
  beforeAll(async () => {
    redis = await startRedisServer();
    svc = await startRedisService(redis.url, { keepAliveMs: null, busOutageMs: 300 });
  });
  afterAll(async () => {
    await svc.close();
    await redis.stop();
  });

  const busErrors = (text: string) =>
    text
      .split('\n')
      .filter((line) => line.startsWith('timeline_bus_errors_total{'))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);

  it('reports the bus down and counts failed bus operations while Redis is away, and up again after', async () => {
    const before = await scrape(svc);
    expect(metricSample(before, 'timeline_bus_up')).toBe(1);
    await redis.whileDown(async () => {
      const stream = await request(`${svc.url}/timeline/stream/${newSessionId()}`);
      expect(stream.status).toBe(503);
      const during = await scrape(svc);
      expect(metricSample(during, 'timeline_bus_up')).toBe(0);
      expect(busErrors(during)).toBeGreaterThan(busErrors(before));
    });
    await waitUntil(async () => metricSample(await scrape(svc), 'timeline_bus_up') === 1, { label: 'the bus up again' });
    expect((await execute(svc.url, synthetic(newSessionId(), { events: 2 }))).status).toBe(200);
  });
});
