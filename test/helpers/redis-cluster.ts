import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type Redis from 'ioredis';
import { freePort } from './process';
import { redisClients, redisProcess, type RedisProcess } from './redis-server';
import { waitUntil } from './wait';

const run = promisify(execFile);

/** One line of `CLUSTER NODES`, as far as the tests need it. */
export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'replica';
  /** The master's id, for a replica. */
  masterId: string | null;
  /** Marked failed (`fail` or `fail?`) by the node asked. */
  failing: boolean;
  /** Slot ranges it serves, as `[first, last]`. */
  slots: Array<[number, number]>;
}

/**
 * A real Redis Cluster on free ports: `masters` masters with one replica each, made by
 * `redis-cli --cluster create` from Debian's redis-server, with a short node timeout so a
 * failover takes seconds. Nodes can be killed (SIGKILL) and started again; `stop` leaves no
 * process and no file behind.
 */
export interface RedisCluster {
  /** Every node's port, in start order. */
  ports: number[];
  /** `host:port,...` as `REDIS_CLUSTER_NODES` takes it. */
  nodesEnv: string;
  /** Startup nodes as ioredis `Cluster` takes them. */
  startupNodes: Array<{ host: string; port: number }>;
  /** The topology as a live node sees it. */
  topology(): Promise<ClusterNodeInfo[]>;
  /** The port of the master serving `slot` now. */
  masterOf(slot: number): Promise<number>;
  /** Kills a node with SIGKILL. */
  kill(port: number): Promise<void>;
  /** Starts a killed node again (it rejoins with its saved cluster config, as a replica if it lost its slots). */
  start(port: number): Promise<void>;
  /**
   * Waits until the cluster serves every slot again with a live master and no live node
   * sees a failed master serving slots; resolves with the topology then.
   */
  whenHealthy(timeoutMs?: number): Promise<ClusterNodeInfo[]>;
  /** A client of one node, for assertions (closed by `stop`). */
  admin(port: number): Redis;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Masters (each gets one replica). Defaults to `3`. */
  masters?: number;
  /** `cluster-node-timeout`: how long a master may be unreachable before its replica takes over. Defaults to `1000`. */
  nodeTimeoutMs?: number;
  /** `requirepass` and `masterauth` of every node. */
  password?: string;
}

function parseSlots(fields: string[]): Array<[number, number]> {
  const slots: Array<[number, number]> = [];
  for (const field of fields) {
    if (field.startsWith('[')) continue; // a slot being migrated or imported
    const [first, last] = field.split('-').map(Number);
    slots.push([first, last ?? first]);
  }
  return slots;
}

/** Parses `CLUSTER NODES` output. */
export function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id, address, flags, master, , , , , ...slots] = line.trim().split(' ');
      const flagList = flags.split(',');
      return {
        id,
        port: Number(/:(\d+)@/.exec(address)?.[1]),
        role: flagList.includes('master') ? 'master' : 'replica',
        masterId: master === '-' ? null : master,
        failing: flagList.includes('fail') || flagList.includes('fail?'),
        slots: parseSlots(slots),
      };
    });
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-cluster-'));
  const ports: number[] = [];
  const nodes = new Map<number, RedisProcess>();
  const clients = redisClients(() => options.password);
  const { admin, probe } = clients;
  const auth = options.password === undefined ? [] : ['--requirepass', options.password, '--masterauth', options.password];
  const stop = async () => {
    clients.closeAll();
    await Promise.all([...nodes.values()].map((node) => node.kill()));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; i < masters * 2; i++) {
      const port = await freePort();
      // The cluster bus is on a port of its own (the default, port + 10000, may not exist).
      const busPort = await freePort();
      const args = [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
        '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-port', String(busPort),
        '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1000),
        // A replica syncs at once instead of after the default 5 s wait for more replicas.
        '--repl-diskless-sync-delay', '0',
        ...auth,
      ];
      ports.push(port);
      nodes.set(port, redisProcess('redis-server', args, port));
    }
    await Promise.all([...nodes.values()].map((node) => node.start()));
    await run('redis-cli', [
      '--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas', '1', '--cluster-yes',
      ...(options.password === undefined ? [] : ['-a', options.password, '--no-auth-warning']),
    ]);
  } catch (error) {
    await stop();
    throw error;
  }

  const liveNodes = () => ports.filter((port) => nodes.get(port)?.running);
  const topology = async () => {
    for (const port of liveNodes()) {
      try {
        return parseClusterNodes((await probe(port).call('CLUSTER', 'NODES')) as string);
      } catch {
        continue; // starting up; ask the next one
      }
    }
    throw new Error('no live cluster node answers CLUSTER NODES');
  };

  /** Every live node says the cluster is ok, and agrees on one live master per slot range. */
  const healthy = async (): Promise<ClusterNodeInfo[] | null> => {
    const live = liveNodes();
    let seen: string | null = null;
    let view: ClusterNodeInfo[] = [];
    for (const port of live) {
      try {
        const info = (await probe(port).call('CLUSTER', 'INFO')) as string;
        if (!/cluster_state:ok/.test(info)) return null;
        view = parseClusterNodes((await probe(port).call('CLUSTER', 'NODES')) as string);
      } catch {
        return null;
      }
      const servingMasters = view.filter((node) => node.role === 'master' && node.slots.length > 0);
      if (servingMasters.some((node) => node.failing || !live.includes(node.port))) return null;
      const summary = JSON.stringify(servingMasters.map((node) => [node.port, node.slots]).sort());
      if (seen !== null && seen !== summary) return null;
      seen = summary;
    }
    const covered = view.flatMap((node) => (node.role === 'master' ? node.slots : [])).reduce((sum, [a, b]) => sum + b - a + 1, 0);
    return covered === 16384 ? view : null;
  };
  const whenHealthy = async (timeoutMs = 20000) => {
    let result: ClusterNodeInfo[] | null = null;
    await waitUntil(async () => (result = await healthy()) !== null, { timeoutMs, intervalMs: 50, label: 'the cluster to be healthy' });
    return result as unknown as ClusterNodeInfo[];
  };

  try {
    await whenHealthy();
    // Every replica has its master's data before a test may kill that master.
    await waitUntil(
      async () => {
        const view = await topology();
        for (const replica of view.filter((node) => node.role === 'replica')) {
          const info = (await probe(replica.port).info('replication')) as string;
          if (!/master_link_status:up/.test(info)) return false;
        }
        return view.filter((node) => node.role === 'replica').length === masters;
      },
      { timeoutMs: 20000, intervalMs: 50, label: 'every replica to be in sync' },
    );
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    ports,
    nodesEnv: ports.map((port) => `127.0.0.1:${port}`).join(','),
    startupNodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    topology,
    masterOf: async (slot) => {
      const owner = (await topology()).find(
        (node) => node.role === 'master' && !node.failing && node.slots.some(([a, b]) => slot >= a && slot <= b),
      );
      if (!owner) throw new Error(`no master serves slot ${slot}`);
      return owner.port;
    },
    kill: async (port) => {
      clients.forget(port);
      await nodes.get(port)?.kill();
    },
    start: async (port) => {
      await nodes.get(port)?.start();
    },
    whenHealthy,
    admin,
    stop,
  };
}
