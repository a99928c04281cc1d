import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { metricSample, request } from '../helpers/api';
import { execute, listenWatchingSockets, newSessionId, startService, synthetic } from '../helpers/service';
import { isNamed, openReady, sendStreamRequest, timelineEvents } from '../helpers/sse-reader';
import { range } from '../helpers/timeline-fixtures';
import { waitUntil, within } from '../helpers/wait';

/**
 * Stalled readers: clients that send the stream request, then never read a byte. The kernel
 * takes what fits in the socket buffers; beyond that, the process holds what it wrote for
 * them, and MAX_BUFFERED_BYTES bounds it per reader: past it a reader gets nothing more
 * (nothing is kept for it either) until it drains, and SLOW_READER_TIMEOUT_MS closes it.
 *
 * The stalled clients come over a Unix socket into the same app: Linux grows a TCP send
 * buffer up to `tcp_wmem` max (4 MiB here) for a reader that does not read, so over TCP the
 * test would push gigabytes through the kernel before the first byte queued in the process.
 * A Unix socket's buffer stays at `wmem_default` (~200 KiB), so the part this test is about
 * (memory held by the process) is reached quickly. The reader that keeps up is on TCP.
 */

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** What the process holds for JavaScript: heap plus off-heap memory (queued socket data). */
function heldBytes(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
}

function settledHeld(): number {
  gc();
  gc();
  return heldBytes();
}

const MiB = 1024 * 1024;

describe('1,000 stalled readers', () => {
  it('each hold at most MAX_BUFFERED_BYTES while runs of about 1 MB go on, then are closed, and the process memory is flat again', async () => {
    const readers = 1000;
    const maxBufferedBytes = 64 * 1024;
    const events = 128;
    const payloadBytes = 8 * 1024;
    const bus = new MemoryBus();
    const svc = await startService(
      { keepAliveMs: null, maxStreams: readers + 10, maxBufferedBytes, slowReaderTimeoutMs: 3000 },
      { bus },
    );
    const dir = mkdtempSync(path.join(os.tmpdir(), 'stalled-readers-'));
    const socketPath = path.join(dir, 'service.sock');
    // The server's side of each stalled connection: its writableLength is what the process holds unsent.
    const watched = await listenWatchingSockets(svc.service, socketPath);
    const sockets: net.Socket[] = [];
    try {
      const sessionId = newSessionId();
      // In batches, so the listen backlog never overflows.
      for (let from = 0; from < readers; from += 100) {
        const batch = range(1, 100).map(() => sendStreamRequest(socketPath, sessionId, { stalled: true }));
        sockets.push(...(await Promise.all(batch)));
        await waitUntil(() => svc.service.streams.size === sockets.length, { timeoutMs: 10000, label: `${sockets.length} streams` });
      }
      for (const socket of sockets) socket.on('error', () => undefined);
      const disconnected = sockets.map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));

      // A reader that keeps up, as a check that the run itself went through to everyone else.
      const healthy = await openReady(`${svc.url}/timeline/stream/${sessionId}`);
      const before = settledHeld();

      // Sampled after an event reached every reader (this listener comes last): the most any
      // stalled reader has queued and their sum at every event, and the live memory (after a
      // collection, so garbage does not count) at every 16th.
      let peakQueued = 0;
      let peakPerReader = 0;
      let peak = before;
      let sampled = 0;
      const sampler = await bus.subscribe(sessionId, {
        onEntry: () => {
          let sum = 0;
          for (const socket of watched.sockets) {
            sum += socket.writableLength;
            peakPerReader = Math.max(peakPerReader, socket.writableLength);
          }
          peakQueued = Math.max(peakQueued, sum);
          if (++sampled % 16 === 0) peak = Math.max(peak, settledHeld());
        },
      });
      const response = await within(
        execute(svc.url, synthetic(sessionId, { events, payload_bytes: payloadBytes, interval_ms: 1 })),
        30000,
        'the run to complete',
      );
      sampler.unsubscribe();
      expect(response.body).toMatchObject({ status: 'completed', event_count: events + 2 });
      await healthy.waitFor(isNamed('done'), 10000);
      expect(timelineEvents(healthy)).toHaveLength(events + 2);

      // Without the bound each stalled reader would queue nearly all it was sent (1 MiB each,
      // 1 GiB in all); with it, at most MAX_BUFFERED_BYTES each. The queued events are the
      // same buffers for every reader, so the live memory grows far less than the queues add up to.
      process.stdout.write(
        `${readers} stalled readers, ${((events * payloadBytes) / MiB).toFixed(2)} MiB published to each, ` +
          `MAX_BUFFERED_BYTES ${maxBufferedBytes}: at most ${(peakPerReader / 1024).toFixed(1)} KiB queued for one reader, ` +
          `${(peakQueued / MiB).toFixed(1)} MiB for all; live memory peak +${((peak - before) / MiB).toFixed(1)} MiB ` +
          `(${((peak - before) / readers / 1024).toFixed(1)} KiB per reader)\n`,
      );
      expect(peakPerReader).toBeGreaterThan(maxBufferedBytes / 2);
      expect(peakPerReader).toBeLessThanOrEqual(maxBufferedBytes);
      expect(peak - before).toBeLessThan(readers * maxBufferedBytes + 16 * MiB);

      // Stalled past SLOW_READER_TIMEOUT_MS: every one is closed and its stream released.
      const closedCount = async () =>
        metricSample((await request(`${svc.url}/metrics`)).text, 'timeline_slow_readers_closed_total');
      await waitUntil(async () => (await closedCount()) === readers && svc.service.streams.size === 0, {
        timeoutMs: 20000,
        label: 'every stalled reader to be closed and its stream released',
      });
      const after = settledHeld();
      // The server did close them: a client that reads again drains what the kernel held, then sees the end.
      for (const socket of sockets) socket.resume();
      await within(Promise.all(disconnected), 10000, 'every stalled connection to close');
      process.stdout.write(`after the close: live memory ${((after - before) / MiB).toFixed(1)} MiB against before the run\n`);

      expect(await closedCount()).toBe(readers);
      // Flat: once closed, a reader leaves nothing behind (under 4 KiB each, all told).
      expect(after - before).toBeLessThan(readers * 4 * 1024);
    } finally {
      for (const socket of sockets) socket.destroy();
      await watched.close();
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
