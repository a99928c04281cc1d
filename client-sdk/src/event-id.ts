/**
 * Event ids have the Redis Stream id shape `<ms>-<n>` (docs/protocol.md), so they can be ordered:
 * the SDK drops a replayed or out-of-order event, the server merges a replay with live events.
 * Both parts are canonical decimals (no leading zeros), so they compare by length, then by
 * text, at any size. The one ordering of event ids; the server imports it.
 */
const EVENT_ID = /^(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$/;

function compareParts(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders two canonical event ids; `null` (the very start) precedes every id. */
export function compareEventIds(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  const dashA = a.indexOf('-');
  const dashB = b.indexOf('-');
  return (
    compareParts(a.slice(0, dashA), b.slice(0, dashB)) ||
    compareParts(a.slice(dashA + 1), b.slice(dashB + 1))
  );
}

/**
 * Whether `id` comes after `last` (`null`: nothing seen yet). An id of another shape cannot be
 * ordered, so it counts as new unless it repeats `last` exactly.
 */
export function isAfter(id: string, last: string | null): boolean {
  if (last === null) return true;
  if (!EVENT_ID.test(id) || !EVENT_ID.test(last)) return id !== last;
  return compareEventIds(id, last) > 0;
}
