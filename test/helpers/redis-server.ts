import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePort } from './process';

export interface RedisServerOptions {
  /**
   * Keep data across a restart (append-only file, fsync on every write), like a deployment
   * with persistence. Defaults to `false`: a restart comes back empty.
   */
  persistent?: boolean;
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
  /** A plain client of its own, for assertions (CLIENT LIST, PUBSUB, KEYS). */
  admin(): Redis;
  /** Stops it for good and removes its files. */
  stop(): Promise<void>;
}

// Last resort if a suite dies without its afterAll: no orphaned redis-server.
const orphans = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of orphans) child.kill('SIGKILL');
});

/** Resolves once `child` (named `name` in errors) accepts connections on 127.0.0.1:`port`. */
export function waitForPort(port: number, child: ChildProcess, timeoutMs = 10000, name = 'redis-server'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        reject(new Error(`${name} exited with ${child.exitCode ?? child.signalCode} before listening on ${port}`));
        return;
      }
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`${name} did not listen on ${port} within ${timeoutMs} ms`));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
  args.push(...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
  let child: ChildProcess | null = null;
  const admins: Redis[] = [];

  const start = async () => {
    const proc = spawn('redis-server', args, { stdio: 'ignore' });
    child = proc;
    orphans.add(proc);
    proc.once('exit', () => orphans.delete(proc));
    await new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', (error) =>
        reject(new Error(`cannot start redis-server (is it on PATH? .ci/run installs it): ${error.message}`)),
      );
    });
    await waitForPort(port, proc);
  };
  const kill = async () => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };

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
    admin: () => {
      const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: false });
      client.on('error', () => undefined); // reconnect noise while a test restarts the server
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

