import { Metrics } from '../../server/metrics';
import { RunLostError, type LogEntry } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { MeteredBus } from '../../server/timeline/metered-bus';

const metricsText = (metrics: Metrics) => metrics.registry.metrics();
const sample = (text: string, name: string) => Number(text.split('\n').find((line) => line.startsWith(`${name} `))?.split(' ')[1]);

describe('Metrics.observePublishToWrite', () => {
  it("puts a write in the bucket of its delay since the event id's millisecond", async () => {
    const metrics = new Metrics({ processMetrics: false });
    const now = 1_800_000_000_000;
    const entry = (ms: number): LogEntry => ({ id: `${ms}-0`, kind: 'event', data: '{}', seq: 1 });
    metrics.observePublishToWrite(entry(now - 3), now);
    metrics.observePublishToWrite(entry(now - 40), now);
    metrics.observePublishToWrite(entry(now - 2000), now);
    // A clock behind the log's (another host) counts as no delay, never negative.
    metrics.observePublishToWrite(entry(now + 5), now);
    const text = await metricsText(metrics);
    expect(sample(text, 'timeline_publish_to_write_seconds_bucket{le="0.001"}')).toBe(1);
    expect(sample(text, 'timeline_publish_to_write_seconds_bucket{le="0.005"}')).toBe(2);
    expect(sample(text, 'timeline_publish_to_write_seconds_bucket{le="0.05"}')).toBe(3);
    expect(sample(text, 'timeline_publish_to_write_seconds_bucket{le="2.5"}')).toBe(4);
    expect(sample(text, 'timeline_publish_to_write_seconds_sum')).toBeCloseTo(2.043, 6);
  });
});

describe('MeteredBus', () => {
  /** A memory bus whose publishes fail with `error`. */
  class FailingBus extends MemoryBus {
    constructor(private readonly error: Error) {
      super();
    }
    override async publish(): Promise<string> {
      throw this.error;
    }
  }

  it('counts failed operations by name and passes the failure on', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const bus = new MeteredBus(new FailingBus(new Error('connection refused')), metrics.busErrors);
    const draft = { session_id: 's', seq: 1, type: 'AGENT_START' as const, status: 'IN_PROGRESS' as const, message: 'm', timestamp: '' };
    await expect(bus.publish('s', draft)).rejects.toThrow('connection refused');
    await expect(bus.publish('s', draft)).rejects.toThrow('connection refused');
    expect(await bus.renewLease('s', 'owner', 1000)).toBe(false);
    const text = await metricsText(metrics);
    expect(sample(text, 'timeline_bus_errors_total{operation="publish"}')).toBe(2);
    expect(text).not.toContain('operation="renew_lease"');
    await bus.close();
  });

  it('does not count a run lost to another instance as a bus error', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const bus = new MeteredBus(new FailingBus(new RunLostError('taken over')), metrics.busErrors);
    const draft = { session_id: 's', seq: 2, type: 'AGENT_START' as const, status: 'IN_PROGRESS' as const, message: 'm', timestamp: '' };
    await expect(bus.publish('s', draft)).rejects.toBeInstanceOf(RunLostError);
    expect(await metricsText(metrics)).not.toContain('timeline_bus_errors_total{');
    await bus.close();
  });
});
