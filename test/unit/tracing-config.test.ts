import { ConfigError } from '../../server/config';
import { startTracing, tracing, tracingRequested } from '../../server/telemetry/tracing';

describe('tracingRequested (the standard OTEL_* variables)', () => {
  it.each<[string, boolean, NodeJS.ProcessEnv]>([
    ['nothing set', false, {}],
    ['an OTLP endpoint', true, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }],
    ['a traces-only OTLP endpoint', true, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }],
    ['OTEL_TRACES_EXPORTER=otlp (the SDK default endpoint)', true, { OTEL_TRACES_EXPORTER: 'otlp' }],
    ['two exporters', true, { OTEL_TRACES_EXPORTER: 'otlp, console' }],
    ['OTEL_TRACES_EXPORTER=none, even with an endpoint', false, { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }],
    ['OTEL_SDK_DISABLED=true, even with an endpoint', false, { OTEL_SDK_DISABLED: 'TRUE', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }],
    ['OTEL_SDK_DISABLED=false with an endpoint', true, { OTEL_SDK_DISABLED: 'false', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }],
    ['empty values', false, { OTEL_TRACES_EXPORTER: ' ', OTEL_EXPORTER_OTLP_ENDPOINT: '' }],
  ])('%s → %s', (_case, expected, env) => {
    expect(tracingRequested(env)).toBe(expected);
  });

  it.each<[NodeJS.ProcessEnv, string]>([
    [{ OTEL_TRACES_EXPORTER: 'jaegr' }, 'OTEL_TRACES_EXPORTER'],
    [{ OTEL_TRACES_EXPORTER: 'none,otlp' }, 'OTEL_TRACES_EXPORTER'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
    [{ OTEL_SDK_DISABLED: 'yes' }, 'OTEL_SDK_DISABLED'],
  ])('rejects %j naming %s', (env, variable) => {
    expect(() => tracingRequested(env)).toThrow(ConfigError);
    expect(() => tracingRequested(env)).toThrow(new RegExp(`^${variable}: `));
  });
});

describe('startTracing', () => {
  it('stays off unless the environment asks for it', async () => {
    expect(await startTracing({ env: {} })).toBeNull();
    expect(await startTracing({ env: { OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'console' } })).toBeNull();
    expect(tracing.enabled).toBe(false);
  });

  it('starts when asked, and leaves the process untraced again after shutdown', async () => {
    const handle = await startTracing({ env: { OTEL_TRACES_EXPORTER: 'console', OTEL_SERVICE_NAME: 'tracing-config-test' } });
    expect(handle).not.toBeNull();
    expect(tracing.enabled).toBe(true);
    expect(tracing.tracer.startSpan('probe').isRecording()).toBe(true);
    await handle?.shutdown();
    expect(tracing.enabled).toBe(false);
    expect(tracing.tracer.startSpan('probe').isRecording()).toBe(false);
  });
});
