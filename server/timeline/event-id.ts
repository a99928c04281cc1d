/**
 * Event ids have the Redis Stream id shape `<ms>-<n>` under every bus, so a client's
 * Last-Event-ID means the same thing whichever instance or bus serves it.
 * Ids are kept canonical (no leading zeros) so they compare by length, then by text.
 */

export { compareEventIds } from '../../client-sdk/src/event-id';

const MAX_PART = 18446744073709551615n; // Redis stream ids are two unsigned 64-bit numbers
/** `<ms>-<n>`, both canonical decimals (each also at most 2^64 - 1, which `isEventId` checks). */
export const EVENT_ID_PATTERN = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$/;

export function isEventId(value: string): boolean {
  const match = EVENT_ID_PATTERN.exec(value);
  return match !== null && BigInt(match[1]) <= MAX_PART && BigInt(match[2]) <= MAX_PART;
}

/** Makes ids the way Redis XADD `*` does: wall-clock ms, and a counter within one ms. */
export class EventIdGenerator {
  private lastMs = 0;
  private lastN = 0;

  next(now: number = Date.now()): string {
    if (now > this.lastMs) {
      this.lastMs = now;
      this.lastN = 0;
    } else {
      this.lastN += 1;
    }
    return `${this.lastMs}-${this.lastN}`;
  }
}

/** The millisecond an event id was made at (the log's clock when the event was appended). */
export function eventIdTimeMs(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}
