import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Waiters } from './wait';

const ROOT = path.resolve(__dirname, '..', '..');

/** How a child process ended: `code` when it exited, `signal` when a signal killed it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One line of the service's pino output (stdout is JSON lines). */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** A child process running the compiled service, with its output captured. */
export interface ServiceProcess {
  child: ChildProcess;
  /** Raw stdout and stderr text so far (including a last line without a newline). */
  readonly stdout: string;
  readonly stderr: string;
  /** The stdout lines that parse as JSON objects (pino records). */
  logs(): LogLine[];
  /** Resolves with the first log record (already written or future) that `match` accepts. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number, label?: string): Promise<LogLine>;
  /** Resolves once the process has exited and its output is fully read. Never rejects. */
  exited: Promise<ProcessExit>;
  /** Sends `signal` (default `SIGTERM`) unless the process has exited; resolves with its exit. */
  stop(signal?: NodeJS.Signals): Promise<ProcessExit>;
}

/** A service process that reported it is listening. */
export interface ListeningProcess extends ServiceProcess {
  port: number;
  url: string;
}

/** Service processes `stopAllProcesses` kills. */
const live = new Set<ServiceProcess>();

/** Every child the helpers spawn (services, redis-server, nginx). */
const children = new Set<ChildProcess>();
// Last resort if a test run dies without its afterEach/afterAll: no orphaned processes.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** `spawn`, with the child killed when the test process exits if nothing stopped it before. */
export function spawnTracked(command: string, args: string[], options: SpawnOptions): ChildProcess {
  const child = spawn(command, args, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Resolves once `child` (named `name` in errors), just spawned, accepts connections on
 * 127.0.0.1:`port`; rejects if it cannot start or exits first.
 */
export async function whenListening(child: ChildProcess, port: number, name: string, timeoutMs = 10000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error) => reject(new Error(`cannot start ${name} (is it on PATH? .ci/run installs it): ${error.message}`)));
  });
  const deadline = Date.now() + timeoutMs;
  await new Promise<void>((resolve, reject) => {
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

/** Sends `signal` to `child` unless it has exited; resolves once it has. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** The file package.json's `start` script runs (`node <file>`), built or not. */
export function startScriptPath(): string {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts?: { start?: string } };
  const match = /^node\s+(\S+)$/.exec(pkg.scripts?.start?.trim() ?? '');
  if (!match) throw new Error(`package.json "start" is not "node <file>": ${JSON.stringify(pkg.scripts?.start)}`);
  return path.join(ROOT, match[1]);
}

/** A port nobody listens on right now (the OS picks it; the caller may still lose a race). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The environment of a fresh `npm start`: only `PATH` and `HOME` are inherited, so a
 * `REDIS_URL` or `ANTHROPIC_API_KEY` of the machine running the tests cannot leak in.
 */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** What the tests' service processes run with unless a test says otherwise: the synthetic workflow on. */
const TEST_ENV = { ENABLE_SYNTHETIC: '1' };

/** Starts `node <start script entry>` with `env` on top of a clean environment; does not wait. */
export function spawnService(env: Record<string, string> = {}): ServiceProcess {
  // Follows the `start` script instead of guessing the path.
  const entry = startScriptPath();
  if (!existsSync(entry)) {
    throw new Error(`${entry} does not exist: run "npm run build" (jest's globalSetup does it for e2e runs)`);
  }
  const child = spawnTracked(process.execPath, [entry], {
    cwd: ROOT,
    env: { ...baseEnv(), ...TEST_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partialLine = '';
  const parsed: LogLine[] = [];
  const waiters = new Waiters();
  let exit: ProcessExit | null = null;

  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    const lines = (partialLine + chunk).split('\n');
    partialLine = lines.pop() ?? '';
    for (const line of lines) {
      try {
        const value: unknown = JSON.parse(line);
        if (value && typeof value === 'object' && !Array.isArray(value)) parsed.push(value as LogLine);
      } catch {
        // Not a pino record (a crash message, say): only in the raw stdout, not in logs().
        continue;
      }
    }
    waiters.notify();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

  const exited = new Promise<ProcessExit>((resolve) => {
    // `close` (not `exit`): every byte of stdout and stderr has been read by then.
    child.once('close', (code, signal) => {
      exit = { code, signal };
      live.delete(proc);
      waiters.notify();
      resolve(exit);
    });
    child.once('error', (error) => {
      stderr += `spawn failed: ${error.message}\n`;
      exit = { code: null, signal: null };
      live.delete(proc);
      resolve(exit);
    });
  });

  const proc: ServiceProcess = {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    logs: () => [...parsed],
    waitForLog(match, timeoutMs = 10000, label = 'log line') {
      const find = () => {
        const line = parsed.find(match);
        if (!line && exit) throw new Error(`process exited (${JSON.stringify(exit)}) before ${label}; stderr: ${stderr}`);
        return line;
      };
      return waiters.until(find, timeoutMs, () => `${label}; stdout: ${stdout}; stderr: ${stderr}`);
    },
    exited,
    stop(signal = 'SIGTERM') {
      if (!exit) child.kill(signal);
      return exited;
    },
  };
  live.add(proc);
  return proc;
}

/**
 * Starts the service on a free port and resolves once it logged
 * `{"msg":"timeline service listening","port":N}`. The config rejects `PORT=0` (every
 * numeric variable but the two "0 = off" ones must be positive), so the port is picked
 * here; a lost race for it (EADDRINUSE) is retried on another port.
 */
export async function startProcess(env: Record<string, string> = {}, startTimeoutMs = 15000): Promise<ListeningProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc = spawnService({ ...env, PORT: String(port) });
    try {
      const line = await proc.waitForLog((l) => l.msg === 'timeline service listening', startTimeoutMs, 'the listening line');
      if (line.port !== port) throw new Error(`service reported port ${String(line.port)}, was given ${port}`);
      return Object.assign(proc, { port, url: `http://127.0.0.1:${port}` });
    } catch (error) {
      await kill(proc);
      if (attempt < 3 && proc.stderr.includes('EADDRINUSE')) continue;
      throw error;
    }
  }
}

async function kill(proc: ServiceProcess): Promise<void> {
  proc.child.kill('SIGKILL');
  await proc.exited;
}

/** Kills (SIGKILL) every service process still running; for `afterEach`/`afterAll`. */
export async function stopAllProcesses(): Promise<void> {
  await Promise.all([...live].map(kill));
}
