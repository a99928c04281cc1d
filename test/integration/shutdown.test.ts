import net from 'node:net';
import type { DonePayload } from '../../client-sdk/src/types';
import { handoverRetryMs, HANDOVER_RETRY_MAX_MS, HANDOVER_RETRY_MIN_MS } from '../../server/http/stream-registry';
import type { LogSlice } from '../../server/timeline/bus';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { execute, newSessionId, startService, synthetic } from '../helpers/service';
import { isNamed, openReady, openSse, seqAtLeast, trailingRetry } from '../helpers/sse-reader';
import { waitUntil, within } from '../helpers/wait';

/** Resolves with the time `promise` settled. */
const settledAt = (promise: Promise<unknown>): Promise<number> => promise.then(() => Date.now());

async function doneOf(bus: MemoryBus, sessionId: string): Promise<DonePayload | null> {
  const slice = await bus.read(sessionId, null);
  const done = slice.entries.find((entry) => entry.kind === 'done');
  return done ? (JSON.parse(done.data) as DonePayload) : null;
}

describe('service.close()', () => {
  it('does not wait for a connection that never sent a request', async () => {
    const svc = await startService();
    const { port } = new URL(svc.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const closedByServer = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    try {
      // Node would otherwise keep it until its request timeout (minutes).
      await within(svc.close(), 10000, 'the service to close with a silent connection open');
      await within(closedByServer, 1000, 'the silent connection to be closed');
    } finally {
      socket.destroy();
    }
  });

  it('ends open streams at once with a short retry hint and no done, while the run finishes within the grace', async () => {
    const bus = new MemoryBus();
    const svc = await startService({ keepAliveMs: null, shutdownGraceMs: 10000 }, { bus });
    const sessionId = newSessionId();
    const running = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    const waiting = await openReady(`${svc.url}/timeline/stream/${newSessionId()}`);
    const run = execute(svc.url, synthetic(sessionId, { events: 20, interval_ms: 50 }));
    await running.waitFor(seqAtLeast(3));

    const closingAt = Date.now();
    const closed = settledAt(svc.close());
    const endedAt = await within(settledAt(Promise.all([running.ended, waiting.ended])), 2000, 'the streams to end');
    const response = await within(run, 10000, 'the held POST to answer');
    const closedAt = await within(closed, 10000, 'the service to close');

    expect(endedAt - closingAt).toBeLessThan(500);
    for (const reader of [running, waiting]) {
      const hint = trailingRetry(reader);
      expect(hint).toBeGreaterThanOrEqual(HANDOVER_RETRY_MIN_MS);
      expect(hint).toBeLessThan(HANDOVER_RETRY_MAX_MS);
      // Ended, not finished: the client reconnects (elsewhere) with its last id.
      expect(reader.frames.some(isNamed('done'))).toBe(false);
    }
    // The run was not cut: it completed inside the grace, and the close waited for it.
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ status: 'completed', event_count: 22 });
    expect(closedAt - closingAt).toBeLessThan(10000);
    // On the memory bus the done exists only in this process's log, which goes with it: a
    // handed-over reader has no other instance to read it from (only Redis makes that work).
    expect(await doneOf(bus, sessionId)).toEqual({ status: 'completed', result: { events: 20 } });
    expect(svc.service.streams.size).toBe(0);
  });

  it('ends a stream that was still being set up when the shutdown began, not after the grace', async () => {
    class GatedReads extends MemoryBus {
      reads = 0;
      gate: Promise<void> | null = null;

      override async read(sessionId: string, afterId: string | null): Promise<LogSlice> {
        this.reads += 1;
        if (this.gate) await this.gate;
        return super.read(sessionId, afterId);
      }
    }
    const bus = new GatedReads();
    const graceMs = 3000;
    const svc = await startService({ keepAliveMs: null, shutdownGraceMs: graceMs }, { bus });
    const sessionId = newSessionId();
    // A run that outlives the grace keeps the close going that long.
    const run = execute(svc.url, synthetic(sessionId, { events: 100, interval_ms: 100 }));
    await waitUntil(async () => (await bus.read(sessionId, null)).status === 'running', { label: 'the run to start' });

    let open: () => void = () => undefined;
    bus.gate = new Promise<void>((resolve) => (open = resolve));
    const readsBefore = bus.reads;
    const opening = openSse(`${svc.url}/timeline/stream/${sessionId}`);
    await waitUntil(() => bus.reads > readsBefore, { label: 'the stream to start its first read' });
    const closingAt = Date.now();
    const closed = svc.close();
    open();
    const reader = await opening;
    const endedAt = await within(settledAt(reader.ended), 2000, 'the late stream to end');

    expect(endedAt - closingAt).toBeLessThan(graceMs / 2);
    expect(reader.status).toBe(200);
    expect(trailingRetry(reader)).not.toBeNull();
    expect(reader.frames.some(isNamed('done'))).toBe(false);
    const response = await within(run, graceMs + 5000, 'the run to end');
    expect(response.body).toMatchObject({ error: { code: 'shutdown' } });
    await within(closed, 5000, 'the service to close');
    expect(svc.service.streams.size).toBe(0);
  });

  it('waits for a run that a request in flight started after the shutdown began', async () => {
    class GatedClaims extends MemoryBus {
      claims = 0;
      gate: Promise<void> | null = null;

      override async claimRun(...args: Parameters<MemoryBus['claimRun']>): Promise<boolean> {
        this.claims += 1;
        if (this.gate) await this.gate;
        return super.claimRun(...args);
      }
    }
    const bus = new GatedClaims();
    const svc = await startService({ keepAliveMs: null, shutdownGraceMs: 10000 }, { bus });
    const sessionId = newSessionId();
    let open: () => void = () => undefined;
    bus.gate = new Promise<void>((resolve) => (open = resolve));
    const run = execute(svc.url, synthetic(sessionId, { events: 5, interval_ms: 20 }));
    await waitUntil(() => bus.claims === 1, { label: 'the POST to reach the claim' });

    const order: string[] = [];
    const closed = svc.close().then(() => order.push('closed'));
    open();
    const response = await within(run, 10000, 'the POST to answer');
    order.push('answered');
    await within(closed, 10000, 'the service to close');

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ status: 'completed', event_count: 7 });
    expect(order).toEqual(['answered', 'closed']);
    expect(await doneOf(bus, sessionId)).toEqual({ status: 'completed', result: { events: 5 } });
  });

  it('still obeys a cancel during the grace: the run ends cancelled, not shutdown, and the close does not wait the grace out', async () => {
    const bus = new MemoryBus();
    const graceMs = 10000;
    const svc = await startService({ keepAliveMs: null, shutdownGraceMs: graceMs }, { bus });
    const sessionId = newSessionId();
    const reader = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
    const run = execute(svc.url, synthetic(sessionId, { events: 1000, interval_ms: 20 }));
    await reader.waitFor(seqAtLeast(2));

    const closingAt = Date.now();
    const closed = settledAt(svc.close());
    await within(reader.ended, 2000, 'the stream to end');
    // As another instance would relay it: this one refuses new requests while draining.
    expect(await bus.requestCancel(sessionId)).toBe('cancelling');
    const response = await within(run, 5000, 'the POST to answer');
    const closedAt = await within(closed, 5000, 'the service to close');

    expect(response.body).toMatchObject({ status: 'cancelled' });
    expect(await doneOf(bus, sessionId)).toEqual({ status: 'cancelled' });
    expect(closedAt - closingAt).toBeLessThan(graceMs / 2);
  });
});

describe('handoverRetryMs', () => {
  it('spreads the shutdown retry hint over [250, 1000) ms, never beyond RETRY_MS', () => {
    expect(handoverRetryMs(2000, () => 0)).toBe(HANDOVER_RETRY_MIN_MS);
    expect(handoverRetryMs(2000, () => 0.9999)).toBe(HANDOVER_RETRY_MAX_MS - 1);
    expect(handoverRetryMs(2000, () => 0.5)).toBe(625);
    expect(handoverRetryMs(100, () => 0.5)).toBe(100);
  });
});
