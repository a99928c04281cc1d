/**
 * `npm run bench [-- --quick] [-- --scenarios=a,b,e,f] [-- --reps=N] [-- --profile] [-- --heap-snapshot]`
 *
 * Starts a private redis-server, the service (two instances: streams are opened on one and
 * runs started on the other, so every event crosses Redis) and the raw baseline (two
 * instances, split the same way), then drives both from a load client in its own process.
 * Targets alternate within each repetition; see bench/README.md.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Redis from 'ioredis';
import { startRedisServer } from '../test/helpers/redis-server';
import { counterOf, cpuSeconds, LoadClient, ROOT, rssBytes, startServer, waitFor200, type ServerProcess } from './processes';
import type { RunSpec } from './protocol';
import { renderGrowthSvg, renderTable, summarize, type GrowthRecord, type Kind, type LoadRecord, type StalledRecord } from './report';
import { percentile } from './stats';

interface LoadScenario {
  key: string;
  title: string;
  sessions: number;
  events: number;
  intervalMs: number;
  payloadBytes: number;
  /** Streams held open without a run while the sessions run. */
  idleStreams: number;
}

/** The runs of one load: sessions × events. */
type LoadShape = Omit<LoadScenario, 'key' | 'title' | 'idleStreams'>;

interface GrowthScenario {
  steps: number[];
  probe: LoadShape;
}

/** Scenario f: readers that stop reading, spread over sessions whose runs publish about 1 MB. */
interface StalledScenario {
  readers: number;
  runs: LoadShape;
}

interface Options {
  quick: boolean;
  scenarios: Set<string>;
  reps: number;
  profile: boolean;
  heapSnapshot: boolean;
}

function parseOptions(argv: string[]): Options {
  const value = (name: string) => argv.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
  const quick = argv.includes('--quick') || process.env.BENCH_QUICK === '1';
  const scenarios = (value('scenarios') ?? process.env.BENCH_SCENARIOS ?? 'a,b,c,d,e,f').split(',').map((s) => s.trim());
  return {
    quick,
    scenarios: new Set(scenarios),
    reps: Number(value('reps') ?? process.env.BENCH_REPS ?? (quick ? 1 : 3)),
    profile: argv.includes('--profile'),
    heapSnapshot: argv.includes('--heap-snapshot'),
  };
}

function loadScenarios(quick: boolean): LoadScenario[] {
  const q = (full: number, small: number) => (quick ? small : full);
  return [
    { key: 'a', title: `a. ${q(50, 10)} sessions × ${q(200, 50)} events at 10 ms`, sessions: q(50, 10), events: q(200, 50), intervalMs: 10, payloadBytes: 0, idleStreams: 0 },
    { key: 'b', title: `b. ${q(20, 5)} sessions × ${q(5000, 1000)} events back to back, 200-byte payload`, sessions: q(20, 5), events: q(5000, 1000), intervalMs: 0, payloadBytes: 200, idleStreams: 0 },
    { key: 'c', title: `c. ${q(2000, 300)} idle streams held open while ${q(200, 50)} sessions × 20 events run (50 ms apart)`, sessions: q(200, 50), events: 20, intervalMs: 50, payloadBytes: 0, idleStreams: q(2000, 300) },
    { key: 'd', title: `d. ${q(100, 30)} sessions started at once (10 events back to back)`, sessions: q(100, 30), events: 10, intervalMs: 0, payloadBytes: 0, idleStreams: 0 },
  ];
}

function growthScenario(quick: boolean): GrowthScenario {
  return {
    steps: quick ? [100, 1000, 2000] : [100, 1000, 5000, 10000],
    probe: { sessions: 20, events: 100, intervalMs: 20, payloadBytes: 0 },
  };
}

function stalledScenario(quick: boolean): StalledScenario {
  // 128 events of 8 KiB: about 1 MiB published to every reader of each session.
  return { readers: quick ? 300 : 1000, runs: { sessions: 10, events: 128, intervalMs: 0, payloadBytes: 8192 } };
}

/** The service's count of readers that fell `MAX_BUFFERED_BYTES` behind and caught up from the log. */
const CAUGHT_UP = 'timeline_slow_readers_caught_up_total';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A run of `shape` for each of its sessions, each on a new session id. */
const runSpecs = (shape: LoadShape): RunSpec[] =>
  Array.from({ length: shape.sessions }, () => ({
    sessionId: randomUUID(),
    events: shape.events,
    intervalMs: shape.intervalMs,
    payloadBytes: shape.payloadBytes,
  }));

const newSessionIds = (count: number): string[] => Array.from({ length: count }, () => randomUUID());

/** The two instances of one target: streams are read on `streams`, runs start on `runs`. */
interface Pair {
  kind: Kind;
  streams: ServerProcess;
  runs: ServerProcess;
  stop(): Promise<void>;
}

class Bench {
  private redis!: Awaited<ReturnType<typeof startRedisServer>>;
  private admin!: Redis;
  private client!: LoadClient;
  private readonly profileDir = path.join(ROOT, 'bench', 'results', 'profiles');

  constructor(private readonly options: Options) {}

  async start(): Promise<void> {
    this.redis = await startRedisServer();
    this.admin = this.redis.admin();
    this.client = new LoadClient();
    if (this.options.profile || this.options.heapSnapshot) mkdirSync(this.profileDir, { recursive: true });
  }

  async stop(): Promise<void> {
    this.client?.stop();
    await this.redis?.stop();
  }

  private nodeArgs(label: string): string[] {
    const args: string[] = [];
    if (this.options.profile) args.push('--cpu-prof', `--cpu-prof-dir=${this.profileDir}`, `--cpu-prof-name=${label}.cpuprofile`);
    if (this.options.heapSnapshot) args.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${this.profileDir}`);
    return args;
  }

  async startPair(kind: Kind, label: string): Promise<Pair> {
    await this.admin.flushall();
    const entry =
      kind === 'service'
        ? (process.env.BENCH_SERVICE_ENTRY ?? path.join(ROOT, 'dist', 'server', 'main.js'))
        : path.join(__dirname, 'baseline', 'server.js');
    const env = {
      REDIS_URL: this.redis.url,
      LOG_LEVEL: 'warn',
      MAX_STREAMS: '100000',
      MAX_RUNS: '100000',
      // Every run of the load comes from one client address.
      MAX_RUNS_PER_CALLER: '100000',
      // The load comes through the synthetic workflow, which is off by default.
      ENABLE_SYNTHETIC: '1',
    };
    const [streams, runs] = await Promise.all([
      startServer(`${kind} streams`, entry, env, this.nodeArgs(`${label}-${kind}-streams`)),
      startServer(`${kind} runs`, entry, env, this.nodeArgs(`${label}-${kind}-runs`)),
    ]);
    const pair: Pair = { kind, streams, runs, stop: async () => void (await Promise.all([streams.stop(), runs.stop()])) };
    // Warm-up, so JIT compilation is not measured.
    await this.load(pair, { sessions: 5, events: 200, intervalMs: 0, payloadBytes: 100 }, 0);
    return pair;
  }

  private async redisCpu(): Promise<number> {
    const info = await this.admin.info('cpu');
    const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
    return field('used_cpu_user') + field('used_cpu_sys');
  }

  /** Opens a stream of each session on `server` and waits for each `ready`. */
  private async open(server: ServerProcess, sessionIds: string[]): Promise<{ failed: number; errors: string[] }> {
    if (sessionIds.length === 0) return { failed: 0, errors: [] };
    return this.client.request(
      { type: 'open', base: server.url, sessionIds, concurrency: 200, timeoutMs: 30000 },
      'opened',
      300000,
    );
  }

  /** Opens `idle` idle streams and one stream per session, then runs the sessions and measures. */
  async load(pair: Pair, shape: LoadShape, idle: number, scenario?: string, rep = 0): Promise<LoadRecord> {
    const runs = runSpecs(shape);
    const opened = await this.open(pair.streams, [...newSessionIds(idle), ...runs.map((run) => run.sessionId)]);
    if (opened.failed > 0) throw new Error(`${pair.kind}: ${opened.failed} streams failed to open: ${opened.errors.join('; ')}`);
    const record = await this.measureRun(pair, runs, scenario ?? 'warm-up', rep);
    await this.client.request({ type: 'close' }, 'closed', 60000);
    return record;
  }

  private async measureRun(pair: Pair, runs: RunSpec[], scenario: string, rep: number): Promise<LoadRecord> {
    const pids = [pair.streams.pid, pair.runs.pid];
    const caughtUpBefore = await counterOf(pair.streams.url, CAUGHT_UP);
    const cpuBefore = pids.map(cpuSeconds);
    const redisBefore = await this.redisCpu();
    const rss = { streams: rssBytes(pair.streams.pid), runs: rssBytes(pair.runs.pid) };
    const sampler = setInterval(() => {
      rss.streams = Math.max(rss.streams, rssBytes(pair.streams.pid));
      rss.runs = Math.max(rss.runs, rssBytes(pair.runs.pid));
    }, 100);
    let reply;
    try {
      reply = await this.client.request({ type: 'run', postBase: pair.runs.url, runs, timeoutMs: 240000 }, 'result', 300000);
    } finally {
      clearInterval(sampler);
    }
    const [cpuStreams, cpuRuns] = pids.map((pid, i) => cpuSeconds(pid) - cpuBefore[i]);
    const cpu = cpuStreams + cpuRuns;
    const redisCpu = (await this.redisCpu()) - redisBefore;
    const caughtUp = (await counterOf(pair.streams.url, CAUGHT_UP)) - caughtUpBefore;
    const { latencyMs, ttfeMs, elapsedMs, ...counts } = reply.measurement;
    return {
      scenario,
      target: pair.kind,
      rep,
      latencyP50: percentile(latencyMs, 50),
      latencyP99: percentile(latencyMs, 99),
      latencyMax: percentile(latencyMs, 100),
      ttfeP50: percentile(ttfeMs, 50),
      ttfeP99: percentile(ttfeMs, 99),
      throughput: counts.events / (elapsedMs / 1000),
      cpuPer1k: cpu / (counts.events / 1000),
      cpuStreamsPer1k: cpuStreams / (counts.events / 1000),
      cpuRunsPer1k: cpuRuns / (counts.events / 1000),
      redisCpuPer1k: redisCpu / (counts.events / 1000),
      rssStreamsMiB: rss.streams / 2 ** 20,
      rssRunsMiB: rss.runs / 2 ** 20,
      caughtUp,
      ...counts,
    };
  }

  /** Scenario e on one target: idle streams grow step by step, a probe load measures each step. */
  async growth(pair: Pair, scenario: GrowthScenario, rep: number, snapshot: boolean): Promise<GrowthRecord[]> {
    const records: GrowthRecord[] = [];
    await sleep(500);
    const rssBase = rssBytes(pair.streams.pid);
    let idle = 0;
    for (const streams of scenario.steps) {
      const probe = scenario.probe.sessions;
      const add = Math.max(0, streams - probe - idle);
      const cpuBefore = cpuSeconds(pair.streams.pid);
      const opened = await this.open(pair.streams, newSessionIds(add));
      const runs = runSpecs(scenario.probe);
      await this.open(pair.streams, runs.map((run) => run.sessionId));
      const openCpu = cpuSeconds(pair.streams.pid) - cpuBefore;
      idle += add - opened.failed;
      await sleep(500);
      const rss = rssBytes(pair.streams.pid);
      const record = await this.measureRun(pair, runs, 'e', rep);
      // After the step's measurement: writing a snapshot disturbs the process for a while.
      if (snapshot && streams === scenario.steps[scenario.steps.length - 1]) await this.heapSnapshot(pair);
      records.push({
        target: pair.kind,
        rep,
        streams,
        latencyP50: record.latencyP50,
        latencyP99: record.latencyP99,
        rssMiB: rss / 2 ** 20,
        rssPerStreamKiB: (rss - rssBase) / streams / 1024,
        openCpuMsPerStream: (openCpu * 1000) / (add + probe),
        openFailures: opened.failed,
        completeSessions: record.completeSessions,
        sessions: record.sessions,
      });
      log(
        `  e ${pair.kind} rep ${rep} @${streams}: p99 ${record.latencyP99.toFixed(2)} ms, RSS ${(rss / 2 ** 20).toFixed(0)} MiB` +
          ` (${((rss - rssBase) / streams / 1024).toFixed(1)} KiB/stream), complete ${record.completeSessions}/${record.sessions}` +
          (opened.failed ? `, ${opened.failed} opens failed: ${opened.errors[0]}` : ''),
      );
    }
    await this.client.request({ type: 'close' }, 'closed', 120000);
    return records;
  }

  /**
   * Scenario f on one target: stalled readers (open, never read after `ready`) spread over the
   * sessions, plus one reader per session that keeps up; then the runs. What the stream
   * instance's RSS grows by over the runs, per stalled reader, is what one costs.
   */
  async stalledReaders(pair: Pair, scenario: StalledScenario, rep: number): Promise<StalledRecord> {
    const runs = runSpecs(scenario.runs);
    const sessionIds = Array.from({ length: scenario.readers }, (_, i) => runs[i % runs.length].sessionId);
    const opened = await this.client.request(
      { type: 'stall', base: pair.streams.url, sessionIds, concurrency: 200, timeoutMs: 30000 },
      'opened',
      300000,
    );
    if (opened.failed > 0) throw new Error(`${pair.kind}: ${opened.failed} stalled streams failed to open: ${opened.errors.join('; ')}`);
    const readers = await this.open(pair.streams, runs.map((run) => run.sessionId));
    if (readers.failed > 0) throw new Error(`${pair.kind}: ${readers.failed} streams failed to open: ${readers.errors.join('; ')}`);
    await sleep(500);
    const before = rssBytes(pair.streams.pid);
    const record = await this.measureRun(pair, runs, 'f', rep);
    // What the stalled readers were sent stays where it is until they are closed.
    await sleep(500);
    const peak = Math.max(record.rssStreamsMiB * 2 ** 20, rssBytes(pair.streams.pid));
    await this.client.request({ type: 'close' }, 'closed', 120000);
    const bytesPerReader = scenario.runs.events * (scenario.runs.payloadBytes + 256);
    const result: StalledRecord = {
      target: pair.kind,
      rep,
      readers: scenario.readers,
      bytesPerReader,
      rssBeforeMiB: before / 2 ** 20,
      rssPeakMiB: peak / 2 ** 20,
      growthPerReaderKiB: (peak - before) / scenario.readers / 1024,
      completeSessions: record.completeSessions,
      sessions: record.sessions,
    };
    log(
      `  f ${pair.kind} rep ${rep}: RSS ${result.rssBeforeMiB.toFixed(0)} → ${result.rssPeakMiB.toFixed(0)} MiB, ` +
        `${result.growthPerReaderKiB.toFixed(1)} KiB per stalled reader, complete ${record.completeSessions}/${record.sessions}` +
        (record.errors.length ? `; ${record.errors[0]}` : ''),
    );
    return result;
  }

  private async heapSnapshot(pair: Pair): Promise<void> {
    const before = new Set(readdirSync(this.profileDir));
    pair.streams.child.kill('SIGUSR2');
    // The snapshot is written on the main thread: the instance answers again once it is done.
    for (let i = 0; i < 600; i++) {
      await sleep(500);
      if (readdirSync(this.profileDir).some((name) => !before.has(name) && name.endsWith('.heapsnapshot'))) break;
    }
    await waitFor200(`${pair.streams.url}/healthz`, 300000, 'after heap snapshot');
    log(`  heap snapshot of ${pair.kind} streams instance written to ${this.profileDir}`);
  }
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, node ${process.version}`;
}

/** This process's open-files limit; the client and the stream instance inherit it. */
function openFileLimit(): number {
  const match = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return match ? Number(match[1]) : Infinity;
}

/** Other work on the machine shows up as noise: the load average says how much there was. */
const loadAverage = () => os.loadavg().map((load) => load.toFixed(2)).join(' ');

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const bench = new Bench(options);
  const startedAt = new Date();
  const load: LoadRecord[] = [];
  const growth: GrowthRecord[] = [];
  const stalled: StalledRecord[] = [];
  const order = (rep: number): Kind[] => (rep % 2 === 1 ? ['service', 'baseline'] : ['baseline', 'service']);
  const loadBefore = loadAverage();
  log(`bench: ${options.quick ? 'quick' : 'full'}, scenarios ${[...options.scenarios].join(',')}, ${options.reps} repetitions; ${machine()}; load average ${loadBefore}`);
  await bench.start();
  try {
    for (const scenario of loadScenarios(options.quick).filter((s) => options.scenarios.has(s.key))) {
      log(scenario.title);
      for (let rep = 1; rep <= options.reps; rep++) {
        for (const kind of order(rep)) {
          const pair = await bench.startPair(kind, `${scenario.key}-r${rep}`);
          try {
            const record = await bench.load(pair, scenario, scenario.idleStreams, scenario.title, rep);
            load.push(record);
            log(
              `  ${kind} rep ${rep}: p99 ${record.latencyP99.toFixed(2)} ms, ${record.throughput.toFixed(0)} ev/s, ` +
                `TTFE p99 ${record.ttfeP99.toFixed(2)} ms, CPU ${record.cpuPer1k.toFixed(3)} s/1k, ` +
                `complete ${record.completeSessions}/${record.sessions}${record.errors.length ? `; ${record.errors[0]}` : ''}`,
            );
          } finally {
            await pair.stop();
          }
        }
      }
    }
    if (options.scenarios.has('e')) {
      const scenario = growthScenario(options.quick);
      const largest = scenario.steps[scenario.steps.length - 1];
      const limit = openFileLimit();
      if (limit < largest + 500) {
        log(`warning: open files limit (ulimit -n) is ${limit}; ${largest} streams need about ${largest + 500}: raise it (ulimit -n) before running e`);
      }
      log(`e. growth: ${scenario.steps.join(', ')} open streams on one instance, probe ${scenario.probe.sessions} sessions × ${scenario.probe.events} events at ${scenario.probe.intervalMs} ms`);
      for (let rep = 1; rep <= options.reps; rep++) {
        for (const kind of order(rep)) {
          const pair = await bench.startPair(kind, `e-r${rep}`);
          try {
            growth.push(...(await bench.growth(pair, scenario, rep, options.heapSnapshot && rep === 1)));
          } finally {
            await pair.stop();
          }
        }
      }
    }
    if (options.scenarios.has('f')) {
      const scenario = stalledScenario(options.quick);
      log(`f. ${scenario.readers} stalled readers over ${scenario.runs.sessions} sessions, ${scenario.runs.events} events of ${scenario.runs.payloadBytes} B back to back`);
      for (let rep = 1; rep <= options.reps; rep++) {
        for (const kind of order(rep)) {
          const pair = await bench.startPair(kind, `f-r${rep}`);
          try {
            stalled.push(await bench.stalledReaders(pair, scenario, rep));
          } finally {
            await pair.stop();
          }
        }
      }
    }
  } finally {
    await bench.stop();
  }

  const summary = summarize(load, growth, stalled);
  const finishedAt = new Date();
  const loadAfter = loadAverage();
  const header =
    `bench ${options.quick ? '--quick' : '(full)'} ${startedAt.toISOString()} (${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s), ` +
    `${machine()}, ${options.reps} repetition(s), targets alternating; load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}`;
  console.log(header);
  console.log(renderTable(summary));
  const dir = path.join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'latest.json'),
    JSON.stringify({ startedAt, finishedAt, machine: machine(), loadAverage: { before: loadBefore, after: loadAfter }, options: { ...options, scenarios: [...options.scenarios] }, summary, load, growth, stalled }, null, 2) + '\n',
  );
  if (growth.length > 0) writeFileSync(path.join(dir, 'growth.svg'), renderGrowthSvg(summary, `${startedAt.toISOString().slice(0, 10)}, ${machine()}`));
  console.log(`\nwrote bench/results/latest.json${growth.length > 0 ? ' and bench/results/growth.svg' : ''}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
