/**
 * Whether a parsed JSON value nests arrays and objects deeper than `maxDepth` (a scalar is
 * depth 0, `[]` or `{}` depth 1). Iterative: `JSON.parse` accepts any nesting, but whatever
 * later walks the value recursively (`JSON.stringify`, a validator, a prompt builder) would
 * overflow the stack on one nested 100,000 levels deep.
 */
export function nestedDeeperThan(value: unknown, maxDepth: number): boolean {
  const pending: Array<[unknown, number]> = [[value, 0]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, depth] = next;
    if (typeof item !== 'object' || item === null) continue;
    if (depth + 1 > maxDepth) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) pending.push([child, depth + 1]);
  }
  return false;
}
