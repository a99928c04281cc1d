/**
 * Event ids have the Redis Stream id shape `<ms>-<n>` (DESIGN.md), so the SDK can order them
 * and drop a replayed or out-of-order event. Both parts are canonical decimals (no leading
 * zeros), so they compare by length, then by text, at any size.
 */
const EVENT_ID = /^(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$/;

function compareParts(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Whether `id` comes after `last` (`null`: nothing seen yet). An id of another shape cannot be
 * ordered, so it counts as new unless it repeats `last` exactly.
 */
export function isAfter(id: string, last: string | null): boolean {
  if (last === null) return true;
  const a = EVENT_ID.exec(id);
  const b = EVENT_ID.exec(last);
  if (!a || !b) return id !== last;
  return (compareParts(a[1], b[1]) || compareParts(a[2], b[2])) > 0;
}
