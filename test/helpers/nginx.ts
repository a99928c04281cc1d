import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, spawnTracked, stopChild, whenListening } from './process';

const ROOT = path.resolve(__dirname, '..', '..');

/** The deployment's nginx config, the file docker-compose.yml mounts. */
export const NGINX_CONF = path.join(ROOT, 'deploy', 'nginx.conf');

const UPSTREAM_MARK = '# test:upstream';
const LISTEN_MARK = '# test:listen';

// Debian's nginx has all five modules that keep temp files.
const TEMP_PATHS = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'];

/**
 * deploy/nginx.conf with only its marked lines changed: the `# test:upstream` servers become
 * `127.0.0.1:<port>` for each of `upstreamPorts`, the `# test:listen` line listens on
 * `127.0.0.1:<listenPort>`, and the temp paths go under `dir`, so nginx runs as any user.
 * Everything else (buffering, timeouts, headers) is the deployment's own. Throws if a
 * marker is missing, so the test cannot silently drift from the file.
 */
function renderNginxConfig(upstreamPorts: number[], listenPort: number, dir: string): string {
  const lines = readFileSync(NGINX_CONF, 'utf8').split('\n');
  const indexes = (match: (line: string) => boolean) => lines.flatMap((line, i) => (match(line) ? [i] : []));
  const upstreams = indexes((line) => line.includes(UPSTREAM_MARK));
  const listens = indexes((line) => line.includes(LISTEN_MARK));
  const https = indexes((line) => line.trim() === 'http {');
  if (upstreams.length === 0 || listens.length !== 1 || https.length !== 1) {
    throw new Error(`${NGINX_CONF} lost its markers: want "${UPSTREAM_MARK}" lines, one "${LISTEN_MARK}" line and one "http {"`);
  }
  const out: string[] = [];
  lines.forEach((line, i) => {
    const indent = /^\s*/.exec(line)?.[0] ?? '';
    if (i === upstreams[0]) out.push(...upstreamPorts.map((port) => `${indent}server 127.0.0.1:${port};`));
    else if (upstreams.includes(i)) return;
    else if (i === listens[0]) out.push(`${indent}listen 127.0.0.1:${listenPort};`);
    else if (i === https[0]) out.push(line, ...TEMP_PATHS.map((name) => `    ${name}_temp_path ${path.join(dir, 'temp', name)};`));
    else out.push(line);
  });
  return out.join('\n');
}

/** One nginx directive: `name args…;` or `name args… { block }`. */
export interface NginxDirective {
  name: string;
  args: string[];
  block?: NginxDirective[];
}

/**
 * A small reader for nginx's config syntax (words, quoted strings, `;`, `{ }`, `#` comments),
 * enough for the tests to check what deploy/nginx.conf says, directive by directive.
 */
export function parseNginxConfig(text: string): NginxDirective[] {
  const tokens = [...text.matchAll(/#[^\n]*|"((?:\\.|[^"\\])*)"|'((?:\\.|[^'\\])*)'|([;{}])|([^\s;{}"'#]+)/g)]
    .filter((match) => !match[0].startsWith('#'))
    .map((match) => match[1] ?? match[2] ?? match[3] ?? match[4]);
  let at = 0;
  const block = (nested: boolean): NginxDirective[] => {
    const directives: NginxDirective[] = [];
    while (at < tokens.length) {
      if (tokens[at] === '}') {
        if (!nested) throw new Error('nginx config: unexpected "}"');
        at++;
        return directives;
      }
      const [name, args] = [tokens[at++], [] as string[]];
      while (at < tokens.length && tokens[at] !== ';' && tokens[at] !== '{') args.push(tokens[at++]);
      if (tokens[at] === '{') {
        at++;
        directives.push({ name, args, block: block(true) });
      } else if (tokens[at++] === ';') {
        directives.push({ name, args });
      } else {
        throw new Error(`nginx config: "${name}" has no ";"`);
      }
    }
    if (nested) throw new Error('nginx config: missing "}"');
    return directives;
  };
  return block(false);
}

/** A private directory for one nginx, readable by the `nobody` workers nginx uses under root. */
function nginxDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-nginx-'));
  chmodSync(dir, 0o755);
  // nginx makes each temp directory, not their parent.
  mkdirSync(path.join(dir, 'temp'), { mode: 0o755 });
  return dir;
}

/** nginx from PATH, or Debian's /usr/sbin/nginx (not on a non-root user's PATH there). */
function nginxBinary(): string {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin']) {
    if (dir !== '' && existsSync(path.join(dir, 'nginx'))) return path.join(dir, 'nginx');
  }
  return 'nginx'; // spawning it then fails with a message that says how to install it
}

/** nginx's arguments for `conf` in `dir`: no daemon, pid and logs kept out of system paths. */
function nginxArgs(dir: string, conf: string): string[] {
  return ['-p', dir, '-c', conf, '-e', 'stderr', '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`];
}

/**
 * A file for nginx's stdout, which the config's `access_log /dev/stdout` opens by path: that
 * works for a file or a pipe, not for the socket node would hand it as a piped stdout.
 */
function accessLogFd(dir: string): number {
  return openSync(path.join(dir, 'access.log'), 'a');
}

/** `nginx -t` on deploy/nginx.conf rendered for `upstreamPorts`: its exit status and output. */
export function testNginxConfig(upstreamPorts: number[]): { status: number | null; output: string } {
  const dir = nginxDir();
  try {
    const conf = path.join(dir, 'nginx.conf');
    writeFileSync(conf, renderNginxConfig(upstreamPorts, 8080, dir));
    const stdout = accessLogFd(dir);
    const result = spawnSync(nginxBinary(), ['-t', ...nginxArgs(dir, conf)], { encoding: 'utf8', stdio: ['ignore', stdout, 'pipe'] });
    closeSync(stdout);
    if (result.error) throw new Error(`cannot run nginx (is it on PATH? .ci/run installs it): ${result.error.message}`);
    return { status: result.status, output: result.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A real nginx running deploy/nginx.conf in front of the given instance ports. */
export interface Nginx {
  port: number;
  url: string;
  /** Stops it (SIGQUIT is graceful and would wait for open streams: SIGTERM is fast) and removes its files. */
  stop(): Promise<void>;
}

/** Starts nginx on a free port with deploy/nginx.conf, round-robin over `upstreamPorts` on 127.0.0.1. */
export async function startNginx(upstreamPorts: number[]): Promise<Nginx> {
  for (let attempt = 1; ; attempt++) {
    const dir = nginxDir();
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    writeFileSync(conf, renderNginxConfig(upstreamPorts, port, dir));
    const stdout = accessLogFd(dir);
    const child = spawnTracked(nginxBinary(), nginxArgs(dir, conf), { stdio: ['ignore', stdout, 'pipe'] });
    closeSync(stdout);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const stop = async () => {
      await stopChild(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await whenListening(child, port, 'nginx');
    } catch (error) {
      await stop();
      if (attempt < 3 && stderr.includes('Address already in use')) continue;
      throw new Error(`${(error as Error).message}; nginx said: ${stderr}`, { cause: error });
    }
    return {
      port,
      url: `http://127.0.0.1:${port}`,
      stop,
    };
  }
}
