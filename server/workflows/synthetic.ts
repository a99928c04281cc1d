import { z } from 'zod';
import { delay } from '../utils/delay';
import type { Workflow } from './workflow';

export interface SyntheticWorkflowOptions {
  /** Upper bound of `params.events` (`MAX_EVENTS_PER_SESSION`). */
  maxEvents: number;
  /**
   * `MAX_EVENT_BYTES`: `params.payload_bytes` is bounded so that an event fits, and a run that
   * could only fail is refused up front (`400`). Defaults to no bound beyond 65536.
   */
  maxEventBytes?: number;
}

/** The largest `payload_bytes` of the contract. */
const MAX_PAYLOAD_BYTES = 65_536;
/** Room for an event's other fields beside its pad (about 350 bytes with the largest numbers). */
const EVENT_OVERHEAD_BYTES = 1024;

export interface SyntheticParams {
  events: number;
  interval_ms: number;
  payload_bytes: number;
}

/**
 * For load tests and benchmarks: exactly `events` `AGENT_MESSAGE` steps, each stamped with
 * wall-clock and monotonic send times so a reader can measure delivery latency.
 */
export function createSyntheticWorkflow(options: SyntheticWorkflowOptions): Workflow<SyntheticParams> {
  const params = z
    .strictObject({
      events: z.int().min(1).max(options.maxEvents).default(Math.min(10, options.maxEvents)),
      interval_ms: z.int().min(0).max(60_000).default(0),
      payload_bytes: z
        .int()
        .min(0)
        .max(Math.max(0, Math.min(MAX_PAYLOAD_BYTES, (options.maxEventBytes ?? Infinity) - EVENT_OVERHEAD_BYTES)))
        .default(0),
    })
    // `params` may be left out of POST /execute.
    .prefault({});

  return {
    name: 'synthetic',
    description: 'Emits a fixed number of timestamped events, for load tests and benchmarks.',
    params,
    async run({ params: { events, interval_ms, payload_bytes } }, ctx) {
      const pad = 'x'.repeat(payload_bytes);
      for (let i = 1; i <= events; i++) {
        if (i > 1 && interval_ms > 0) await delay(interval_ms, ctx.signal);
        ctx.signal.throwIfAborted();
        await ctx.emit({
          type: 'AGENT_MESSAGE',
          status: i === events ? 'SUCCESS' : 'IN_PROGRESS',
          message: `Synthetic event ${i}/${events}`,
          agent_name: 'synthetic',
          details: {
            i,
            sent_at: Date.now(),
            // Monotonic and shared by every process on the host: sub-millisecond latency.
            sent_mono_ms: Number(process.hrtime.bigint()) / 1e6,
            pad,
          },
        });
      }
      return { events };
    },
  };
}
