import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePort, spawnTracked, stopChild, whenListening } from './process';

export interface RedisServerOptions {
  /**
   * Keep data across a restart (append-only file, fsync on every write), like a deployment
   * with persistence. Defaults to `false`: a restart comes back empty.
   */
  persistent?: boolean;
  /** More `redis-server` arguments (cluster mode, replication), after the defaults. */
  args?: string[];
  /** The port; defaults to a free one. */
  port?: number;
}

/** A private `redis-server` (from `PATH`) on a free port, which a test can stop and restart. */
export interface RedisServer {
  port: number;
  url: string;
  /** Stops the server at once (SIGKILL: no save, clients see a dropped connection). */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** `kill` then `start`. */
  restart(): Promise<void>;
  /** Kills the server, awaits `work`, then starts it again, even when `work` fails. */
  whileDown<T>(work: () => Promise<T>): Promise<T>;
  /** A plain client of its own, for assertions (CLIENT LIST, PUBSUB, KEYS). */
  admin(): Redis;
  /** Stops it for good and removes its files. */
  stop(): Promise<void>;
}

/** A Redis process (`redis-server` or `redis-sentinel`) that can be killed and started again. */
export interface RedisProcess {
  start(): Promise<void>;
  /** SIGKILL: no save, clients see a dropped connection. Resolves once it has exited. */
  kill(): Promise<void>;
  readonly running: boolean;
}

/** `command args` listening on 127.0.0.1:`port`, started by `start()`. */
export function redisProcess(command: string, args: string[], port: number): RedisProcess {
  let child: ChildProcess | null = null;
  return {
    start: async () => {
      child = spawnTracked(command, args, { stdio: 'ignore' });
      await whenListening(child, port, command);
    },
    kill: async () => {
      const proc = child;
      child = null;
      if (proc) await stopChild(proc, 'SIGKILL');
    },
    get running() {
      return child !== null;
    },
  };
}

/** A plain client for assertions, quiet while a test restarts the server. */
export function adminClient(port: number, password?: string): Redis {
  const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: false, password, disconnectTimeout: 100 });
  client.on('error', () => undefined); // reconnect noise while a test restarts the server
  return client;
}

/**
 * The clients a multi-node helper hands out (closed together by `closeAll`): `admin` makes a
 * new one; `probe` keeps one per node for polling, so a dead node costs no reconnect per poll.
 */
export function redisClients(passwordOf: (port: number) => string | undefined) {
  const all: Redis[] = [];
  const probes = new Map<number, Redis>();
  const admin = (port: number) => {
    const client = adminClient(port, passwordOf(port));
    all.push(client);
    return client;
  };
  return {
    admin,
    probe(port: number): Redis {
      let client = probes.get(port);
      if (!client) {
        client = admin(port);
        probes.set(port, client);
      }
      return client;
    },
    /** Drops the probe of a node about to be killed. */
    forget(port: number): void {
      probes.get(port)?.disconnect();
      probes.delete(port);
    },
    closeAll(): void {
      all.splice(0).forEach((client) => client.disconnect());
      probes.clear();
    },
  };
}

/** `INFO commandstats` calls of `command` on a server (0 when it never ran). */
export async function commandCalls(admin: Redis, command: string): Promise<number> {
  const stats = (await admin.info('commandstats')) as string;
  return Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
  args.push(...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
  args.push(...(options.args ?? []));
  const server = redisProcess('redis-server', args, port);
  const admins: Redis[] = [];
  const { start, kill } = server;

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    start,
    restart: async () => {
      await kill();
      await start();
    },
    whileDown: async (work) => {
      await kill();
      try {
        return await work();
      } finally {
        await start();
      }
    },
    admin: () => {
      const client = adminClient(port);
      admins.push(client);
      return client;
    },
    stop: async () => {
      admins.splice(0).forEach((client) => client.disconnect());
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
