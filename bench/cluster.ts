/**
 * `npm run bench:cluster [-- --quick] [-- --reps=N]`
 *
 * Redis Cluster against one Redis, same load: four instances of the service on a 3-master
 * Redis Cluster (3 replicas, made by `redis-cli --cluster create`) against two instances on
 * one `redis-server`. Two load clients, each opening its streams on one instance and starting
 * its runs on another (on the cluster: four instances, two streaming, two running), so every
 * event crosses Redis. Reports throughput, latency and how Redis CPU spreads over the nodes
 * (`INFO cpu` per node). Separate from `npm run bench` (scenarios a–e).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type Redis from 'ioredis';
import { startRedisCluster, type RedisCluster } from '../test/helpers/redis-cluster';
import { startRedisServer, type RedisServer } from '../test/helpers/redis-server';
import { cpuSeconds, LoadClient, ROOT, startServer, type ServerProcess } from './processes';
import type { RunMeasurement, RunSpec } from './protocol';
import { percentile } from './stats';

interface Shape {
  title: string;
  sessions: number;
  events: number;
  intervalMs: number;
  payloadBytes: number;
}

type Target = 'one Redis, 2 instances' | 'cluster, 4 instances';

interface Result {
  shape: string;
  target: Target;
  rep: number;
  throughput: number;
  latencyP50: number;
  latencyP99: number;
  complete: string;
  serviceCpuPer1k: number;
  redisCpuPer1k: number;
  /** Redis CPU seconds per node, by role, during the measurement. */
  redisCpuByNode: Array<{ node: string; seconds: number }>;
}

const value = (name: string) => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const quick = process.argv.includes('--quick');
const reps = Number(value('reps') ?? (quick ? 1 : 3));

const shapes: Shape[] = [
  { title: `${quick ? 8 : 16} sessions × ${quick ? 1000 : 3000} events back to back, 200 B`, sessions: quick ? 8 : 16, events: quick ? 1000 : 3000, intervalMs: 0, payloadBytes: 200 },
  { title: `${quick ? 20 : 60} sessions × 200 events, 10 ms apart`, sessions: quick ? 20 : 60, events: 200, intervalMs: 10, payloadBytes: 0 },
];

const log = (line: string) => process.stderr.write(`${line}\n`);

/** CPU seconds (user + system) a Redis node has used. */
async function redisCpu(admin: Redis): Promise<number> {
  const info = (await admin.info('cpu')) as string;
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** The two deployments, and the nodes whose CPU is measured. */
class Deployments {
  single!: RedisServer;
  cluster!: RedisCluster;
  /** Label (`port master|replica`) and client of each node of a target. */
  nodes = new Map<Target, Array<{ label: string; admin: Redis }>>();

  async start(): Promise<void> {
    [this.single, this.cluster] = await Promise.all([startRedisServer(), startRedisCluster()]);
    this.nodes.set('one Redis, 2 instances', [{ label: `${this.single.port} single`, admin: this.single.admin() }]);
    const topology = await this.cluster.topology();
    this.nodes.set(
      'cluster, 4 instances',
      topology.map((node) => ({ label: `${node.port} ${node.role}`, admin: this.cluster.admin(node.port) })),
    );
  }

  env(target: Target): Record<string, string> {
    const common = { LOG_LEVEL: 'warn', MAX_STREAMS: '100000', MAX_RUNS: '100000' };
    return target === 'cluster, 4 instances' ? { ...common, REDIS_CLUSTER_NODES: this.cluster.nodesEnv } : { ...common, REDIS_URL: this.single.url };
  }

  async flush(target: Target): Promise<void> {
    for (const { label, admin } of this.nodes.get(target) ?? []) if (!label.endsWith('replica')) await admin.flushall();
  }

  async cpu(target: Target): Promise<number[]> {
    return Promise.all((this.nodes.get(target) ?? []).map(({ admin }) => redisCpu(admin)));
  }

  async stop(): Promise<void> {
    await Promise.all([this.single?.stop(), this.cluster?.stop()]);
  }
}

/** One load client's share: streams opened on `streams`, runs started on `runs`. */
interface Lane {
  client: LoadClient;
  streams: ServerProcess;
  runs: ServerProcess;
}

const runSpecs = (shape: Shape, count: number): RunSpec[] =>
  Array.from({ length: count }, () => ({ sessionId: randomUUID(), events: shape.events, intervalMs: shape.intervalMs, payloadBytes: shape.payloadBytes }));

/** Opens every stream of both lanes, then starts both lanes' runs at once; merges what the clients measured. */
async function drive(lanes: Lane[], shape: Shape): Promise<{ measurement: RunMeasurement; elapsedMs: number }> {
  const specs = lanes.map((_, i) => runSpecs(shape, Math.floor(shape.sessions / lanes.length) + (i < shape.sessions % lanes.length ? 1 : 0)));
  await Promise.all(
    lanes.map(async (lane, i) => {
      const opened = await lane.client.request(
        { type: 'open', base: lane.streams.url, sessionIds: specs[i].map((spec) => spec.sessionId), concurrency: 200, timeoutMs: 30000 },
        'opened',
        120000,
      );
      if (opened.failed > 0) throw new Error(`${opened.failed} streams failed to open: ${opened.errors.join('; ')}`);
    }),
  );
  const replies = await Promise.all(
    lanes.map((lane, i) => lane.client.request({ type: 'run', postBase: lane.runs.url, runs: specs[i], timeoutMs: 240000 }, 'result', 300000)),
  );
  await Promise.all(lanes.map((lane) => lane.client.request({ type: 'close' }, 'closed', 60000)));
  const parts = replies.map((reply) => reply.measurement);
  const merged: RunMeasurement = {
    sessions: sum(parts.map((part) => part.sessions)),
    completeSessions: sum(parts.map((part) => part.completeSessions)),
    missing: sum(parts.map((part) => part.missing)),
    duplicates: sum(parts.map((part) => part.duplicates)),
    events: sum(parts.map((part) => part.events)),
    postFailures: sum(parts.map((part) => part.postFailures)),
    elapsedMs: Math.max(...parts.map((part) => part.elapsedMs)),
    latencyMs: parts.flatMap((part) => part.latencyMs),
    ttfeMs: parts.flatMap((part) => part.ttfeMs),
    timedOut: parts.some((part) => part.timedOut),
    errors: parts.flatMap((part) => part.errors),
  };
  return { measurement: merged, elapsedMs: merged.elapsedMs };
}

const sum = (values: number[]) => values.reduce((total, x) => total + x, 0);

async function measure(deployments: Deployments, clients: LoadClient[], target: Target, shape: Shape, rep: number): Promise<Result> {
  await deployments.flush(target);
  const entry = path.join(ROOT, 'dist', 'server', 'main.js');
  const count = target === 'cluster, 4 instances' ? 4 : 2;
  // One at a time: four processes loading at once on a busy machine can miss the start timeout.
  const servers: ServerProcess[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await startServer(`${target} #${i + 1}`, entry, deployments.env(target)));
    // Lane i streams on server i and runs on the next one: with two servers each streams and runs.
    const lanes: Lane[] =
      count === 4
        ? [
            { client: clients[0], streams: servers[0], runs: servers[2] },
            { client: clients[1], streams: servers[1], runs: servers[3] },
          ]
        : [
            { client: clients[0], streams: servers[0], runs: servers[1] },
            { client: clients[1], streams: servers[1], runs: servers[0] },
          ];
    await drive(lanes, { ...shape, sessions: 4, events: 200 }); // warm-up: JIT, scripts loaded on every node
    const cpuBefore = servers.map((server) => cpuSeconds(server.pid));
    const redisBefore = await deployments.cpu(target);
    const { measurement } = await drive(lanes, shape);
    const serviceCpu = sum(servers.map((server, i) => cpuSeconds(server.pid) - cpuBefore[i]));
    const redisAfter = await deployments.cpu(target);
    const perNode = (deployments.nodes.get(target) ?? []).map(({ label }, i) => ({ node: label, seconds: redisAfter[i] - redisBefore[i] }));
    const thousands = measurement.events / 1000;
    return {
      shape: shape.title,
      target,
      rep,
      throughput: measurement.events / (measurement.elapsedMs / 1000),
      latencyP50: percentile(measurement.latencyMs, 50),
      latencyP99: percentile(measurement.latencyMs, 99),
      complete: `${measurement.completeSessions}/${measurement.sessions}${measurement.duplicates || measurement.missing ? ` (dup ${measurement.duplicates}, missing ${measurement.missing})` : ''}`,
      serviceCpuPer1k: serviceCpu / thousands,
      redisCpuPer1k: sum(perNode.map((node) => node.seconds)) / thousands,
      redisCpuByNode: perNode,
    };
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
}

const median = (values: number[]) => percentile(values, 50);

function report(results: Result[]): string {
  const lines = ['| load | target | throughput ev/s | p50 ms | p99 ms | complete | service CPU s/1k ev | Redis CPU s/1k ev | Redis CPU by node (s) |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const shape of new Set(results.map((result) => result.shape))) {
    for (const target of ['one Redis, 2 instances', 'cluster, 4 instances'] as Target[]) {
      const runs = results.filter((result) => result.shape === shape && result.target === target);
      if (runs.length === 0) continue;
      const nodes = runs[0].redisCpuByNode.map(({ node }, i) => `${node}: ${median(runs.map((run) => run.redisCpuByNode[i].seconds)).toFixed(2)}`);
      lines.push(
        `| ${shape} | ${target} | ${median(runs.map((run) => run.throughput)).toFixed(0)} | ${median(runs.map((run) => run.latencyP50)).toFixed(2)} | ` +
          `${median(runs.map((run) => run.latencyP99)).toFixed(2)} | ${runs.map((run) => run.complete).join(', ')} | ` +
          `${median(runs.map((run) => run.serviceCpuPer1k)).toFixed(3)} | ${median(runs.map((run) => run.redisCpuPer1k)).toFixed(3)} | ${nodes.join('; ')} |`,
      );
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg().map((load) => load.toFixed(2)).join(' ');
  log(`bench:cluster ${quick ? 'quick' : 'full'}, ${reps} repetition(s); ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}; load average ${loadBefore}`);
  const deployments = new Deployments();
  const clients = [new LoadClient(), new LoadClient()];
  const results: Result[] = [];
  try {
    await deployments.start();
    for (const shape of shapes) {
      log(shape.title);
      for (let rep = 1; rep <= reps; rep++) {
        const order: Target[] = rep % 2 === 1 ? ['one Redis, 2 instances', 'cluster, 4 instances'] : ['cluster, 4 instances', 'one Redis, 2 instances'];
        for (const target of order) {
          const result = await measure(deployments, clients, target, shape, rep);
          results.push(result);
          log(
            `  ${target} rep ${rep}: ${result.throughput.toFixed(0)} ev/s, p99 ${result.latencyP99.toFixed(2)} ms, complete ${result.complete}, ` +
              `Redis CPU ${result.redisCpuByNode.map(({ node, seconds }) => `${node} ${seconds.toFixed(2)}s`).join(', ')}`,
          );
        }
      }
    }
  } finally {
    for (const client of clients) client.stop();
    await deployments.stop();
  }
  const loadAfter = os.loadavg().map((load) => load.toFixed(2)).join(' ');
  console.log(`bench:cluster ${new Date().toISOString()}, ${reps} repetition(s), medians; load average before ${loadBefore}, after ${loadAfter}`);
  console.log(report(results));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
