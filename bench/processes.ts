import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort } from '../test/helpers/process';
import { waitUntil } from '../test/helpers/wait';
import type { FromClient, ToClient } from './protocol';

/** The repository root: this file runs from `dist/bench/bench/`. */
export const ROOT = path.resolve(__dirname, '..', '..', '..');

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Resident memory of a process in bytes, from `/proc/<pid>/status`. */
export function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : NaN;
}

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  stop(): Promise<void>;
}

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', () => resolve(0));
    req.setTimeout(1000, () => req.destroy());
  });
}

/**
 * A counter of the service's `GET /metrics` (`NaN` when the target has none, like the
 * baseline, or does not answer).
 */
export function counterOf(base: string, name: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(`${base}/metrics`, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        const line = text.split('\n').find((l) => l.startsWith(`${name} `));
        resolve(line === undefined ? NaN : Number(line.slice(name.length + 1)));
      });
    });
    req.once('error', () => resolve(NaN));
    req.setTimeout(5000, () => req.destroy());
  });
}

/** Resolves once `GET url` answers 200 (the event loop runs and the bus is reachable). */
export function waitFor200(url: string, timeoutMs: number, label: string, child?: ChildProcess): Promise<void> {
  return waitUntil(
    async () => {
      if (child && child.exitCode !== null) throw new Error(`${label} exited with ${child.exitCode}`);
      return (await get(url)) === 200;
    },
    { timeoutMs, intervalMs: 50, label: `${label}: ${url} to answer 200` },
  );
}

/** Starts `node [nodeArgs] entry` on a free port and waits for `/readyz`. */
export async function startServer(
  name: string,
  entry: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeArgs, entry], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 20000) stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor200(`${url}/readyz`, 20000, name, child);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}; stderr: ${stderr}`, { cause: error });
  }
  return {
    child,
    pid: child.pid as number,
    url,
    // SIGTERM lets `--cpu-prof` write its profile; a process that lingers is killed.
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The load client process and a request/response channel to it. */
export class LoadClient {
  private readonly child: ChildProcess;
  private waiting: ((message: FromClient) => void) | null = null;

  constructor() {
    this.child = fork(path.join(__dirname, 'load-client.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message: FromClient) => {
      const waiter = this.waiting;
      this.waiting = null;
      waiter?.(message);
    });
  }

  request<T extends FromClient['type']>(message: ToClient, expect: T, timeoutMs: number): Promise<Extract<FromClient, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load client: no ${expect} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        if (reply.type === expect) resolve(reply as Extract<FromClient, { type: T }>);
        else reject(new Error(`load client: ${reply.type === 'error' ? reply.message : `unexpected ${reply.type}`}`));
      };
      this.child.send(message);
    });
  }

  stop(): void {
    this.child.disconnect();
  }
}
