/**
 * `node --max-old-space-size=8192 dist/bench/bench/heap-summary.js <file.heapsnapshot> [streams] [--top=N] [--versus=<other.heapsnapshot>]`
 *
 * What a heap snapshot (`npm run bench -- --scenarios=e --heap-snapshot`) holds, per open
 * stream: self size and count by kind of object. With `--versus`, the difference from another
 * snapshot taken at the same number of streams (the baseline's): what the service keeps per
 * stream that the raw server does not.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count by kind: constructor name for objects, the V8 type for the rest. */
function tally(file: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const kinds = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]];
    const name = snap.strings[snap.nodes[i + nameAt]];
    const kind =
      type === 'string' || type === 'concatenated string' || type === 'sliced string'
        ? '(string)'
        : type === 'code'
          ? '(code)'
          : type === 'object'
            ? name.slice(0, 60)
            : `(${type}) ${name}`.slice(0, 60);
    const entry = kinds.get(kind) ?? { count: 0, bytes: 0 };
    entry.count += 1;
    entry.bytes += snap.nodes[i + sizeAt];
    kinds.set(kind, entry);
  }
  return kinds;
}

const args = process.argv.slice(2);
const option = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const [file, streamsArg] = args.filter((arg) => !arg.startsWith('--'));
const streams = Number(streamsArg ?? 10000);
const top = Number(option('top') ?? 40);
const versus = option('versus');

const mine = tally(file);
const other = versus ? tally(versus) : new Map<string, { count: number; bytes: number }>();
const total = (kinds: Map<string, { bytes: number }>) => [...kinds.values()].reduce((sum, k) => sum + k.bytes, 0);
console.log(`${file}: ${(total(mine) / 2 ** 20).toFixed(1)} MiB of objects, ${(total(mine) / streams / 1024).toFixed(2)} KiB per stream over ${streams}`);
if (versus) {
  console.log(`${versus}: ${(total(other) / 2 ** 20).toFixed(1)} MiB, ${(total(other) / streams / 1024).toFixed(2)} KiB per stream; below: the difference`);
}
const rows = [...new Set([...mine.keys(), ...other.keys()])].map((kind) => {
  const a = mine.get(kind) ?? { count: 0, bytes: 0 };
  const b = other.get(kind) ?? { count: 0, bytes: 0 };
  return { kind, bytes: a.bytes - b.bytes, count: a.count - b.count };
});
rows.sort((x, y) => y.bytes - x.bytes);
console.log('  B/stream  objects/stream  kind');
for (const row of rows.slice(0, top)) {
  console.log(`${(row.bytes / streams).toFixed(0).padStart(10)}  ${(row.count / streams).toFixed(2).padStart(14)}  ${row.kind}`);
}
