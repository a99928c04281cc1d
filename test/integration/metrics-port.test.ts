import { expectJsonError, metricSample, request } from '../helpers/api';
import { execute, newSessionId, startService, synthetic, type RunningService } from '../helpers/service';

/** With METRICS_PORT, /metrics lives on its own port only; the API port does not serve it. */

const API_KEY = 'metrics-port-key';
let svc: RunningService;
let metricsUrl: string;
beforeAll(async () => {
  svc = await startService({ metricsPort: 0, apiKey: API_KEY, keepAliveMs: null });
  metricsUrl = `http://127.0.0.1:${svc.service.metricsPort}`;
});
afterAll(() => svc.close());

it('serves Prometheus text on METRICS_PORT, without credentials, counting what the API port did', async () => {
  const before = metricSample((await request(`${metricsUrl}/metrics`)).text, 'timeline_runs_total{outcome="completed"}');
  const run = await execute(svc.url, synthetic(newSessionId(), { events: 1 }), { Authorization: `Bearer ${API_KEY}` });
  expect(run.status).toBe(200);
  const response = await request(`${metricsUrl}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  expect(metricSample(response.text, 'timeline_runs_total{outcome="completed"}')).toBe(before + 1);
  expect((await request(`${metricsUrl}/metrics`, { method: 'HEAD' })).status).toBe(200);
});

it('does not serve /metrics on the API port', async () => {
  expectJsonError(await request(`${svc.url}/metrics`), 404, 'not_found');
  expectJsonError(await request(`${svc.url}/metrics`, { headers: { Authorization: `Bearer ${API_KEY}` } }), 404, 'not_found');
});

it('serves nothing else on METRICS_PORT, in the JSON error shape', async () => {
  for (const path of ['/', '/healthz', '/execute', `/timeline/${newSessionId()}`]) {
    expectJsonError(await request(`${metricsUrl}${path}`), 404, 'not_found');
  }
  const post = await request(`${metricsUrl}/metrics`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  expectJsonError(post, 405, 'method_not_allowed');
  expect(post.headers.get('allow')).toBe('GET');
});

it('stops listening on METRICS_PORT when the service closes', async () => {
  const other = await startService({ metricsPort: 0, keepAliveMs: null });
  const url = `http://127.0.0.1:${other.service.metricsPort}/metrics`;
  expect((await request(url)).status).toBe(200);
  await other.close();
  await expect(fetch(url)).rejects.toThrow();
});
