import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { MemoryBus } from '../../server/timeline/memory-bus';
import { metricSample, request } from '../helpers/api';
import { execute, newSessionId, startService, synthetic } from '../helpers/service';
import { isNamed, openReady, sendStreamRequest, timelineEvents } from '../helpers/sse-reader';
import { range } from '../helpers/timeline-fixtures';
import { waitUntil, within } from '../helpers/wait';

/**
 * Stalled readers: clients that send the stream request, then never read a byte. The kernel
 * takes what fits in the socket buffers; beyond that, Node queues the unsent frames in the
 * process, and MAX_BUFFERED_BYTES is what keeps that queue bounded.
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

function listenOn(server: Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
}

const MiB = 1024 * 1024;

describe('1,000 stalled readers', () => {
  it('are each cut once their unsent data passes MAX_BUFFERED_BYTES, and the process memory stays flat', async () => {
    const readers = 1000;
    const maxBufferedBytes = 16 * 1024;
    const events = 80;
    const payloadBytes = 8 * 1024;
    const bus = new MemoryBus();
    const svc = await startService({ keepAliveMs: null, maxStreams: readers + 10, maxBufferedBytes }, { bus });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'stalled-readers-'));
    const socketPath = path.join(dir, 'service.sock');
    const unixServer = createServer(svc.service.app);
    // The server's side of each stalled connection: its writableLength is the queue the cut bounds.
    const serverSides: net.Socket[] = [];
    unixServer.on('connection', (socket: net.Socket) => serverSides.push(socket));
    await listenOn(unixServer, socketPath);
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

      // Sampled after an event reached every reader (this listener comes last): the unsent
      // bytes queued for the stalled readers at every event, and the live memory (after a
      // collection, so garbage does not count) at every 10th.
      let peakQueued = 0;
      let peak = before;
      let sampled = 0;
      const sampler = await bus.subscribe(sessionId, {
        onEntry: () => {
          peakQueued = Math.max(peakQueued, serverSides.reduce((sum, socket) => sum + socket.writableLength, 0));
          if (++sampled % 10 === 0) peak = Math.max(peak, settledHeld());
        },
      });
      const response = await within(
        execute(svc.url, synthetic(sessionId, { events, payload_bytes: payloadBytes, interval_ms: 1 })),
        20000,
        'the run to complete',
      );
      sampler.unsubscribe();
      expect(response.body).toMatchObject({ status: 'completed', event_count: events + 2 });
      await healthy.waitFor(isNamed('done'), 10000);
      expect(timelineEvents(healthy)).toHaveLength(events + 2);

      // Without the cut each stalled reader would queue nearly all it was sent (measured: 465 MiB
      // queued, +474 MiB live for this run with the limit set out of reach); with it, a reader
      // queues at most MAX_BUFFERED_BYTES plus the frame that crossed it before it is cut.
      const frameBytes = payloadBytes + 1024;
      const queueBound = readers * (maxBufferedBytes + frameBytes);
      process.stdout.write(
        `${readers} stalled readers, ${((events * payloadBytes) / MiB).toFixed(2)} MiB published to each, ` +
          `MAX_BUFFERED_BYTES ${maxBufferedBytes}: peak queued ${(peakQueued / MiB).toFixed(1)} MiB ` +
          `(bound ${(queueBound / MiB).toFixed(1)} MiB), live memory peak +${((peak - before) / MiB).toFixed(1)} MiB\n`,
      );
      expect(peakQueued).toBeGreaterThan(0);
      expect(peakQueued).toBeLessThanOrEqual(queueBound);
      // Live memory: the queues above plus 16 MiB for the fan-out's own transient objects.
      expect(peak - before).toBeLessThan(queueBound + 16 * MiB);

      const cutCount = async () =>
        metricSample((await request(`${svc.url}/metrics`)).text, 'timeline_slow_readers_disconnected_total');
      await waitUntil(async () => (await cutCount()) === readers && svc.service.streams.size === 0, {
        timeoutMs: 10000,
        label: 'every stalled reader to be cut and its stream released',
      });
      const cut = await cutCount();
      const after = settledHeld();
      // The server did close them: a client that reads again drains what the kernel held, then sees the end.
      for (const socket of sockets) socket.resume();
      await within(Promise.all(disconnected), 10000, 'every stalled connection to close');
      process.stdout.write(`after the cut: live memory ${((after - before) / MiB).toFixed(1)} MiB against before the run\n`);

      expect(cut).toBe(readers);
      // Flat: once cut, a reader leaves nothing behind (under 4 KiB each, all told).
      expect(after - before).toBeLessThan(readers * 4 * 1024);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => unixServer.close(resolve));
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
