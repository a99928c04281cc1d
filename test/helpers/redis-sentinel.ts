import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Redis from 'ioredis';
import { freePort } from './process';
import { redisClients, redisProcess, type RedisProcess } from './redis-server';
import { waitUntil } from './wait';

export const SENTINEL_MASTER_NAME = 'timeline';

/**
 * A real Sentinel deployment on free ports: a master, a replica and three `redis-sentinel`s
 * (quorum 2) from Debian's packages, with a short `down-after-milliseconds` so a failover
 * takes seconds. Data nodes can be killed (SIGKILL) and started again; `stop` leaves no process
 * and no file behind.
 */
export interface RedisSentinelSetup {
  /** The master name the sentinels monitor (`REDIS_SENTINEL_NAME`). */
  name: string;
  /** `host:port,...` of the sentinels, as `REDIS_SENTINELS` takes it. */
  sentinelsEnv: string;
  /** The sentinels as ioredis takes them. */
  sentinels: Array<{ host: string; port: number }>;
  /** Ports of the two data nodes, in start order (the first is the first master). */
  dataPorts: number[];
  /** The port the sentinels name as master now. */
  masterPort(): Promise<number>;
  /** Kills a data node with SIGKILL. */
  kill(port: number): Promise<void>;
  /** Starts a killed data node again (the sentinels make it a replica of the current master). */
  start(port: number): Promise<void>;
  /**
   * Waits until every Sentinel names one master other than `formerPort`, and that server
   * answers `ROLE` as master; resolves with its port.
   */
  whenPromoted(formerPort: number, timeoutMs?: number): Promise<number>;
  /** A client of one data node, for assertions (closed by `stop`). */
  admin(port: number): Redis;
  stop(): Promise<void>;
}

export interface RedisSentinelOptions {
  /** `down-after-milliseconds`: how long the master may be unreachable before a failover. Defaults to `1000`. */
  downAfterMs?: number;
  /** `requirepass` and `masterauth` of the data nodes (the Sentinels know it as `auth-pass`). */
  password?: string;
}

export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelSetup> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-sentinel-'));
  const sentinelPorts: number[] = [];
  const processes = new Map<number, RedisProcess>();
  const stop = async () => {
    clients.closeAll();
    await Promise.all([...processes.values()].map((proc) => proc.kill()));
    rmSync(dir, { recursive: true, force: true });
  };
  // Clients of the data nodes use their password; the Sentinels have none.
  const clients = redisClients((port) => (sentinelPorts.includes(port) ? undefined : options.password));
  const { admin, probe } = clients;
  const auth = options.password === undefined ? [] : ['--requirepass', options.password, '--masterauth', options.password];

  const [masterPort, replicaPort] = [await freePort(), await freePort()];
  const dataArgs = (port: number) => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--dbfilename', `dump-${port}.rdb`,
    // A replica syncs at once instead of after the default 5 s wait for more replicas.
    '--repl-diskless-sync-delay', '0',
    ...auth,
  ];
  processes.set(masterPort, redisProcess('redis-server', dataArgs(masterPort), masterPort));
  processes.set(replicaPort, redisProcess('redis-server', [...dataArgs(replicaPort), '--replicaof', '127.0.0.1', String(masterPort)], replicaPort));
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const config = path.join(dir, `sentinel-${port}.conf`);
    // Sentinel rewrites its config file as it learns the deployment: it must be writable.
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${options.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 10000`,
        `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
        ...(options.password === undefined ? [] : [`sentinel auth-pass ${SENTINEL_MASTER_NAME} ${options.password}`]),
        '',
      ].join('\n'),
    );
    sentinelPorts.push(port);
    processes.set(port, redisProcess('redis-sentinel', [config], port));
  }

  const sentinelClients = sentinelPorts.map(admin);
  const masterNamedBy = async (client: Redis) => {
    const [, port] = (await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as [string, string];
    return Number(port);
  };

  try {
    await Promise.all([masterPort, replicaPort].map((port) => processes.get(port)?.start()));
    await Promise.all(sentinelPorts.map((port) => processes.get(port)?.start()));
    // A failover needs a quorum of sentinels that know each other and the replica.
    await waitUntil(
      async () => {
        for (const client of sentinelClients) {
          const others = (await client.call('SENTINEL', 'SENTINELS', SENTINEL_MASTER_NAME)) as unknown[];
          const replicas = (await client.call('SENTINEL', 'REPLICAS', SENTINEL_MASTER_NAME)) as unknown[];
          if (others.length < 2 || replicas.length < 1) return false;
        }
        return /master_link_status:up/.test((await probe(replicaPort).info('replication')) as string);
      },
      { timeoutMs: 20000, intervalMs: 100, label: 'the sentinels to know each other and the replica' },
    );
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    name: SENTINEL_MASTER_NAME,
    sentinelsEnv: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
    sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
    dataPorts: [masterPort, replicaPort],
    masterPort: () => masterNamedBy(sentinelClients[0]),
    kill: async (port) => {
      clients.forget(port);
      await processes.get(port)?.kill();
    },
    start: async (port) => {
      await processes.get(port)?.start();
    },
    whenPromoted: async (formerPort, timeoutMs = 30000) => {
      let promoted = 0;
      await waitUntil(
        async () => {
          const named = await Promise.all(sentinelClients.map(masterNamedBy));
          if (named.some((port) => port !== named[0] || port === formerPort)) return false;
          const [role] = (await probe(named[0]).call('ROLE')) as [string];
          promoted = named[0];
          return role === 'master';
        },
        { timeoutMs, intervalMs: 50, label: `the sentinels to promote a master other than ${formerPort}` },
      );
      return promoted;
    },
    admin,
    stop,
  };
}
