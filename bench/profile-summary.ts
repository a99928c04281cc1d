/**
 * `node dist/bench/bench/profile-summary.js <file.cpuprofile>... [--top=N]`
 *
 * Summarises V8 CPU profiles written by `npm run bench -- --profile`: self and inclusive
 * time per function, with the service's compiled lines mapped back to `server/*.ts`
 * through the build's source maps, and self time per package (express, ioredis, ...).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const maps = new Map<string, SourceMap | null>();

/** `server/x.ts:LINE` for a compiled line of ours, else the file's last path parts. */
function where(url: string, line: number, column: number): string {
  if (!url) return '(native)';
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (!maps.has(file)) {
    const mapFile = `${file}.map`;
    maps.set(file, existsSync(mapFile) ? new SourceMap(JSON.parse(readFileSync(mapFile, 'utf8'))) : null);
  }
  const map = maps.get(file);
  const entry = map?.findEntry(line, column) as { originalSource?: string; originalLine?: number } | undefined;
  if (entry?.originalSource) {
    const source = entry.originalSource.replace(/^.*?\/(server|client-sdk|bench)\//, '$1/');
    return `${source}:${(entry.originalLine ?? 0) + 1}`;
  }
  const nm = file.lastIndexOf('node_modules/');
  const short = nm >= 0 ? file.slice(nm + 'node_modules/'.length) : file.replace(/^.*\/(dist|lib)\//, '$1/');
  return `${short}:${line + 1}`;
}

function packageOf(url: string): string {
  if (!url) return '(native: syscalls, V8 builtins)';
  if (url.startsWith('node:')) return 'node core';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.includes('/dist/server/') || url.includes('/dist/client-sdk/')) return 'service (server/, client-sdk/)';
  if (url.includes('/dist/bench/')) return 'bench baseline';
  return url;
}

function summarise(path: string, top: number): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const interval = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length) / 1000;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  // Loading modules at start is not the event path: samples under the main module's first run are left out.
  const startup = new Map<number, boolean>();
  const underStartup = (id: number): boolean => {
    const known = startup.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id) as ProfileNode;
    const up = parent.get(id);
    const result = node.callFrame.url === 'node:internal/main/run_main_module' || (up !== undefined && underStartup(up));
    startup.set(id, result);
    return result;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const packages = new Map<string, number>();
  let busy = 0;
  const label = (node: ProfileNode) =>
    `${node.callFrame.functionName || '(anonymous)'} ${where(node.callFrame.url, node.callFrame.lineNumber, node.callFrame.columnNumber)}`;
  for (const node of profile.nodes) {
    const ms = (node.hitCount ?? 0) * interval;
    if (ms === 0) continue;
    const name = node.callFrame.functionName;
    if (name === '(idle)' || name === '(program)' || underStartup(node.id)) continue;
    busy += ms;
    self.set(label(node), (self.get(label(node)) ?? 0) + ms);
    const pkg = name === '(garbage collector)' ? '(garbage collector)' : packageOf(node.callFrame.url);
    packages.set(pkg, (packages.get(pkg) ?? 0) + ms);
    // Inclusive: each distinct function on the stack once.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id) as ProfileNode;
      if (frame.callFrame.functionName === '(root)') break;
      const key = label(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + ms);
    }
  }
  const list = (map: Map<string, number>, n: number) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key, ms]) => `  ${ms.toFixed(0).padStart(7)} ms ${((ms / busy) * 100).toFixed(1).padStart(5)}%  ${key}`)
      .join('\n');
  return [
    `${path}: ${busy.toFixed(0)} ms busy (start-up excluded) of ${((profile.endTime - profile.startTime) / 1000).toFixed(0)} ms`,
    'by package (self):',
    list(packages, 15),
    `top ${top} self:`,
    list(self, top),
    `top ${top} inclusive:`,
    list(inclusive, top),
  ].join('\n');
}

const args = process.argv.slice(2);
const top = Number(args.find((arg) => arg.startsWith('--top='))?.slice(6) ?? 30);
for (const file of args.filter((arg) => !arg.startsWith('--'))) console.log(`${summarise(file, top)}\n`);
