import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { DEFAULT_CONFIG, loadConfig } from '../../server/config';
import { NGINX_CONF, parseNginxConfig, testNginxConfig, type NginxDirective } from '../helpers/nginx';
import { startScriptPath } from '../helpers/process';

/**
 * No Docker engine runs here, so the deployment files are checked by reading them: the
 * compose wiring (services, environment, ports, the nginx config mount), nginx.conf's
 * upstreams and SSE settings, and the Dockerfile's runtime stage. `nginx -t` checks the
 * config itself.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

interface ComposeService {
  hostname?: string;
  restart?: string;
  networks?: string[] | Record<string, { aliases?: string[] } | null>;
  build?: string | { context: string };
  profiles?: string[];
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
}

// `merge: true`: the app services share one definition through a YAML merge key (`<<: *app`).
const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, ComposeService>;
  networks?: Record<string, unknown>;
};
/** The services `docker compose up` starts (no profile), and those of the `cluster` profile. */
const inProfile = (profile: string | null) =>
  Object.fromEntries(
    Object.entries(compose.services).filter(([, service]) => (profile === null ? service.profiles === undefined : service.profiles?.includes(profile))),
  );
const services = inProfile(null);
const appNames = Object.keys(services).filter((name) => services[name].build !== undefined);
/** The names of the services `docker compose up` starts (those of no profile), and of those of each profile. */
const profileNames = (profile: string | null) => Object.keys(inProfile(profile)).sort();
/** The default of a `${VAR:-default}` value (what compose uses when VAR is unset). */
const composeDefault = (value: string | undefined) => /^\$\{\w+:-(.*)\}$/.exec(value ?? '')?.[1] ?? value;
const nginxConf = parseNginxConfig(readFileSync(NGINX_CONF, 'utf8'));

/** Every directive named `name` under `directives`, at any depth. */
function findAll(directives: NginxDirective[], name: string): NginxDirective[] {
  return directives.flatMap((d) => [...(d.name === name ? [d] : []), ...findAll(d.block ?? [], name)]);
}

function findOne(directives: NginxDirective[], name: string, ...args: string[]): NginxDirective {
  const found = findAll(directives, name).filter((d) => args.every((arg, i) => d.args[i] === arg));
  if (found.length !== 1) throw new Error(`want one "${[name, ...args].join(' ')}" in nginx.conf, found ${found.length}`);
  return found[0];
}

/** The value of a directive set directly in `block` (not in a nested block). */
const setting = (block: NginxDirective[], name: string) => block.filter((d) => d.name === name).map((d) => d.args.join(' '));

/** nginx time (`1h`, `90s`, `500ms`, bare seconds) in milliseconds. */
function nginxMs(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!match) throw new Error(`not an nginx time: ${value}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? 's'] as number;
  return Number(match[1]) * unit;
}

const serverBlocks = findAll(nginxConf, 'server').filter((d) => d.block !== undefined);
if (serverBlocks.length !== 1) throw new Error(`want one server block in nginx.conf, found ${serverBlocks.length}`);
const server = serverBlocks[0].block as NginxDirective[];
const location = (...args: string[]) => findOne(server, 'location', ...args).block as NginxDirective[];
const listenPort = Number(/(\d+)$/.exec(findOne(server, 'listen').args[0])?.[1]);

describe('docker-compose.yml', () => {
  it('runs Redis, two service instances built from the Dockerfile, and nginx', () => {
    expect(profileNames(null)).toEqual(['app1', 'app2', 'nginx', 'redis']);
    expect(appNames).toEqual(['app1', 'app2']);
    for (const name of appNames) expect(services[name].build).toBe('.');
    expect(services.redis.image).toMatch(/^redis:\d/);
    expect(services.nginx.image).toMatch(/^nginx:\d/);
  });

  it.each(['app1', 'app2'])('%s reaches the redis service, listens on PORT and waits for Redis to be healthy', (name) => {
    const app = services[name];
    const redisUrl = new URL(app.environment?.REDIS_URL ?? '');
    expect(redisUrl.protocol).toBe('redis:');
    expect(redisUrl.hostname).toBe('redis');
    expect(redisUrl.port).toBe('6379');
    expect(app.environment?.PORT).toBe('3000');
    expect(app.depends_on).toEqual({ redis: { condition: 'service_healthy' } });
    expect(app.healthcheck?.test.join(' ')).toContain(`127.0.0.1:${app.environment?.PORT}/readyz`);
    // The runs' shutdown grace (SHUTDOWN_GRACE_MS) fits before Docker's SIGKILL.
    expect(nginxMs(app.stop_grace_period ?? '10s')).toBeGreaterThan(DEFAULT_CONFIG.shutdownGraceMs);
    // Only nginx is published: every request goes through it.
    expect(app.ports).toBeUndefined();
    // The instances believe nginx's X-Forwarded-For (the compose network's private addresses).
    expect(app.environment?.TRUST_PROXY).toBe('uniquelocal');
    // Auth comes from the operator's environment, empty (off) unless given.
    expect(app.environment).toMatchObject({ API_KEY: '${API_KEY:-}', JWT_SECRET: '${JWT_SECRET:-}' });
    // Metrics on their own port, inside the compose network only.
    expect(app.environment?.METRICS_PORT).toMatch(/^\d+$/);
    expect(app.expose).toEqual([app.environment?.PORT, app.environment?.METRICS_PORT]);
  });

  it('bounds Redis memory and never lets it evict keys (what the instances check at start)', () => {
    const command = services.redis.command ?? [];
    const value = (flag: string) => command[command.indexOf(flag) + 1];
    expect(command).toContain('--maxmemory');
    expect(value('--maxmemory')).toMatch(/^[1-9]\d*(mb|gb)$/);
    expect(value('--maxmemory-policy')).toBe('noeviction');
  });

  it('has a Redis that answers its healthcheck on the port the apps use', () => {
    expect(services.redis.healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
    expect(services.redis.command ?? []).not.toContain('--port');
    expect(services.redis.ports).toBeUndefined();
  });

  it('mounts deploy/nginx.conf read-only as nginx.conf and publishes its listen port', () => {
    const nginx = services.nginx;
    expect(nginx.volumes).toContain('./deploy/nginx.conf:/etc/nginx/nginx.conf:ro');
    // On localhost only: as shipped, the service has no auth (API_KEY / JWT_SECRET unset).
    expect(nginx.ports).toEqual([`127.0.0.1:${listenPort}:${listenPort}`]);
    expect(nginx.depends_on).toEqual(Object.fromEntries(appNames.map((name) => [name, { condition: 'service_healthy' }])));
  });
});

describe('docker-compose.yml, profile observability', () => {
  const prometheusConfig = parse(readFileSync(path.join(ROOT, 'deploy/prometheus.yml'), 'utf8')) as {
    rule_files: string[];
    scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }>;
  };
  const provisioning = (file: string) => parse(read(`deploy/grafana/provisioning/${file}`));

  it('adds Prometheus, Grafana and Jaeger, and only them', () => {
    expect(profileNames('observability')).toEqual(['grafana', 'jaeger', 'prometheus']);
    expect(compose.services.prometheus.image).toMatch(/^prom\/prometheus:v\d/);
    expect(compose.services.grafana.image).toMatch(/^grafana\/grafana:\d/);
    expect(compose.services.jaeger.image).toMatch(/^jaegertracing\/jaeger:2\./);
  });

  it('has Prometheus scrape every app service on its METRICS_PORT, with the alert rules mounted where its config loads them', () => {
    const targets = prometheusConfig.scrape_configs.flatMap((job) => job.static_configs.flatMap((c) => c.targets)).sort();
    expect(targets).toEqual(appNames.map((name) => `${name}:${services[name].environment?.METRICS_PORT}`).sort());
    expect(compose.services.prometheus.volumes).toEqual(
      expect.arrayContaining(['./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro', `./deploy/alerts.yml:${prometheusConfig.rule_files[0]}:ro`]),
    );
    expect(compose.services.prometheus.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
  });

  it('provisions Grafana with the Prometheus service as data source and the dashboard folder it mounts', () => {
    expect(compose.services.grafana.volumes).toEqual(
      expect.arrayContaining(['./deploy/grafana/provisioning:/etc/grafana/provisioning:ro', './deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro']),
    );
    const [datasource] = provisioning('datasources/prometheus.yml').datasources;
    expect(datasource).toMatchObject({ type: 'prometheus', url: `http://prometheus:${compose.services.prometheus.ports?.[0].split(':')[1]}` });
    expect(provisioning('dashboards/timeline.yml').providers[0].options.path).toBe('/var/lib/grafana/dashboards');
    expect(existsSync(path.join(ROOT, 'deploy/grafana/dashboards/timeline.json'))).toBe(true);
    expect(compose.services.grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe('/var/lib/grafana/dashboards/timeline.json');
  });

  it.each(['app1', 'app2'])('%s sends its spans to Jaeger over OTLP once OTEL_TRACES_EXPORTER=otlp, and traces nothing by default', (name) => {
    const env = services[name].environment ?? {};
    expect(composeDefault(env.OTEL_TRACES_EXPORTER)).toBe('none');
    const endpoint = new URL(composeDefault(env.OTEL_EXPORTER_OTLP_ENDPOINT) ?? '');
    expect(endpoint.hostname).toBe('jaeger');
    expect(compose.services.jaeger.expose).toContain(endpoint.port);
    expect(endpoint.port).toBe('4318');
    expect(env.OTEL_SERVICE_NAME).toBe('timeline-service');
  });
});

describe('docker-compose.yml, profile cluster', () => {
  const cluster = inProfile('cluster');
  const nodeNames = Object.keys(cluster).filter((name) => /^redis-node-\d+$/.test(name));
  const clusterApps = Object.keys(cluster).filter((name) => cluster[name].build !== undefined);
  const upstreamNames = setting(findOne(nginxConf, 'upstream', 'timeline').block as NginxDirective[], 'server').map((entry) => entry.split(':')[0]);
  const networksOf = (service: ComposeService) =>
    Array.isArray(service.networks) ? service.networks : Object.keys(service.networks ?? {});
  /** The command a service runs, as the container gets it (compose turns `$$` into `$`). */
  const script = (service: ComposeService) => (service.command ?? []).join(' ').replace(/\$\$/g, '$');
  /** The `sh -c` script of a service, which `sh -n` checks for syntax. */
  const shellScript = (service: ComposeService) => {
    const [shell, flag, body] = (service.command ?? []).map((part) => part.replace(/\$\$/g, '$'));
    expect([shell, flag]).toEqual(['sh', '-c']);
    return body;
  };
  const parsesAsShell = (body: string) => spawnSync('sh', ['-n', '-c', body], { encoding: 'utf8' }).status === 0;
  const password = cluster['redis-node-1'].environment?.REDIS_PASSWORD;

  it('adds six Redis nodes, a cluster-create job, two instances and an nginx, all on a network of their own', () => {
    expect(nodeNames).toHaveLength(6);
    expect(clusterApps.sort()).toEqual(['app1-cluster', 'app2-cluster']);
    expect(Object.keys(cluster).sort()).toEqual([...nodeNames, 'redis-cluster-create', 'app1-cluster', 'app2-cluster', 'nginx-cluster'].sort());
    for (const service of Object.values(cluster)) expect(networksOf(service)).toEqual(['cluster']);
    for (const service of Object.values(services)) expect(service.networks).toBeUndefined();
    expect(Object.keys(compose.networks ?? {})).toEqual(['cluster']);
  });

  it.each(['redis-node-1', 'redis-node-6'])('runs %s in cluster mode with its own data volume, password and healthcheck, announcing its name', (name) => {
    const node = cluster[name];
    expect(node.image).toMatch(/^redis:7\./); // sharded pub/sub needs Redis 7
    expect(parsesAsShell(shellScript(node))).toBe(true);
    expect(script(node)).toContain('--cluster-enabled yes');
    expect(script(node)).toContain('--appendonly yes');
    expect(script(node)).toContain('--requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"');
    expect(script(node)).toContain('--cluster-announce-hostname "$(hostname)"');
    expect(node.hostname).toBe(name);
    expect(node.environment?.REDIS_PASSWORD).toBe(password);
    expect(node.volumes).toEqual([`${name}-data:/data`]);
    expect(node.healthcheck?.test.join(' ')).toContain('ping');
    expect(node.ports).toBeUndefined();
  });

  it('creates the cluster once every node is healthy: three masters, one replica each', () => {
    const job = cluster['redis-cluster-create'];
    expect(job.depends_on).toEqual(Object.fromEntries(nodeNames.map((name) => [name, { condition: 'service_healthy' }])));
    expect(parsesAsShell(shellScript(job))).toBe(true);
    expect(script(job)).toMatch(/redis-cli --cluster create \$nodes --cluster-replicas 1 --cluster-yes/);
    expect(script(job)).toContain('for n in 1 2 3 4 5 6');
    expect(job.restart).toBe('no');
    expect(job.environment?.REDIS_PASSWORD).toBe(password);
  });

  it.each(['app1-cluster', 'app2-cluster'])('%s starts on the cluster (a valid configuration), once it is made, as an nginx upstream name', (name) => {
    const app = cluster[name];
    const env = app.environment ?? {};
    expect(app.build).toBe('.');
    const config = loadConfig(env);
    expect(config.redisUrl).toBeNull();
    expect(config.redisClusterNodes?.map((node) => node.host).every((host) => nodeNames.includes(host))).toBe(true);
    expect(config.redisClusterNodes?.every((node) => node.port === 6379)).toBe(true);
    expect(env.REDIS_PASSWORD).toBe(password);
    expect(app.depends_on).toEqual({ 'redis-cluster-create': { condition: 'service_completed_successfully' } });
    expect(app.healthcheck?.test.join(' ')).toContain('/readyz');
    expect(app.ports).toBeUndefined();
    const aliases = (app.networks as Record<string, { aliases: string[] }>).cluster.aliases;
    expect(aliases).toHaveLength(1);
    expect(upstreamNames).toContain(aliases[0]);
  });

  it('puts deploy/nginx.conf in front of the cluster instances, published on its own port', () => {
    const nginx = cluster['nginx-cluster'];
    const aliases = clusterApps.flatMap((name) => (cluster[name].networks as Record<string, { aliases: string[] }>).cluster.aliases);
    expect(aliases.sort()).toEqual([...upstreamNames].sort());
    expect(nginx.volumes).toContain('./deploy/nginx.conf:/etc/nginx/nginx.conf:ro');
    // Localhost only until auth is set, as the default stack (see the top of docker-compose.yml).
    expect(nginx.ports).toEqual([`127.0.0.1:8081:${listenPort}`]);
    expect(nginx.depends_on).toEqual(Object.fromEntries(clusterApps.map((name) => [name, { condition: 'service_healthy' }])));
  });
});

describe('deploy/nginx.conf', () => {
  it('balances over exactly the app services, on their PORT, with upstream keep-alive', () => {
    const upstream = findOne(nginxConf, 'upstream', 'timeline').block as NginxDirective[];
    const servers = setting(upstream, 'server').sort();
    expect(servers).toEqual(appNames.map((name) => `${name}:${services[name].environment?.PORT}`).sort());
    // Round-robin is nginx's default: no other balancing method is set.
    expect(upstream.map((d) => d.name).filter((n) => ['least_conn', 'ip_hash', 'hash', 'random'].includes(n))).toEqual([]);
    expect(Number(setting(upstream, 'keepalive')[0])).toBeGreaterThan(0);
    expect(setting(server, 'proxy_http_version')).toEqual(['1.1']);
    expect(setting(server, 'proxy_set_header')).toEqual(
      expect.arrayContaining(['Connection ', 'Last-Event-ID $http_last_event_id', 'X-Forwarded-For $proxy_add_x_forwarded_for', 'X-Forwarded-Proto $scheme']),
    );
    // A location with proxy_set_header of its own would inherit none of the server's.
    expect(findAll(server, 'location').flatMap((l) => setting(l.block ?? [], 'proxy_set_header'))).toEqual([]);
    for (const proxied of findAll(server, 'proxy_pass')) expect(proxied.args).toEqual(['http://timeline']);
  });

  it('streams without buffering, compression or caching, with a read timeout far above the keep-alive', () => {
    const stream = location('/timeline/stream/');
    expect(setting(stream, 'proxy_buffering')).toEqual(['off']);
    expect(setting(stream, 'proxy_cache')).toEqual(['off']);
    expect(setting(stream, 'gzip')).toEqual(['off']);
    expect(nginxMs(setting(stream, 'proxy_read_timeout')[0])).toBeGreaterThanOrEqual(4 * (DEFAULT_CONFIG.keepAliveMs as number));
  });

  it('waits for a long synchronous POST /execute and takes the same body size as BODY_LIMIT', () => {
    expect(nginxMs(setting(location('=', '/execute'), 'proxy_read_timeout')[0])).toBeGreaterThanOrEqual(30 * 60_000);
    const [limit] = setting(findOne(nginxConf, 'http').block as NginxDirective[], 'client_max_body_size');
    expect(Number(/^(\d+)k$/.exec(limit)?.[1]) * 1024).toBe(DEFAULT_CONFIG.bodyLimitBytes);
  });

  it('passes nginx -t once its upstreams point at real addresses', () => {
    const { status, output } = testNginxConfig([3001, 3002]);
    expect({ status, output }).toEqual({ status: 0, output: expect.stringContaining('test is successful') });
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile').replace(/\\\n/g, ' ');
  const instructions = dockerfile
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const stages = instructions.reduce<string[][]>((all, line) => {
    if (/^FROM /i.test(line)) all.push([]);
    all.at(-1)?.push(line);
    return all;
  }, []);
  const runtime = stages.at(-1) ?? [];
  /** The sources of the build stage's `COPY`s from the build context. */
  const copied = stages[0]
    .filter((line) => line.startsWith('COPY ') && !line.startsWith('COPY --from'))
    .flatMap((line) => line.split(/\s+/).slice(1, -1));
  const last = (keyword: string) => runtime.filter((line) => line.startsWith(`${keyword} `)).at(-1) ?? '';

  it('builds and runs on Node 24 LTS, while package.json keeps Node 20 as the minimum', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-[\w.-]+$/m);
    for (const stage of stages) expect(stage[0]).toMatch(/^FROM \$\{NODE_IMAGE\}/);
    expect((JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node).toBe('>=20');
  });

  it('builds in one stage and runs from another with production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0].some((line) => /^RUN .*npm run build/.test(line))).toBe(true);
    expect(runtime.filter((line) => line.startsWith('RUN ') && line.includes('npm '))).toEqual([
      expect.stringMatching(/^RUN npm ci --omit=dev\b/),
    ]);
    // node_modules come from that npm ci, never from the build stage (it holds dev dependencies).
    expect(runtime.filter((line) => line.startsWith('COPY --from=')).join('\n')).not.toMatch(/node_modules/);
    expect(runtime).toContain('ENV NODE_ENV=production');
  });

  it('runs the start script as a non-root user, on port 3000, with a health check', () => {
    expect(last('USER')).toMatch(/^USER (?!root\b|0\b)\S+$/);
    const cmd = JSON.parse(last('CMD').slice('CMD '.length)) as string[];
    expect(cmd).toEqual(['node', 'dist/server/main.js']);
    expect(path.join(ROOT, cmd[1])).toBe(startScriptPath());
    expect(last('EXPOSE')).toBe('EXPOSE 3000');
    expect(last('HEALTHCHECK')).toContain('/healthz');
  });

  it('does not leave out of the build context what the build copies', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    expect(copied.length).toBeGreaterThan(0);
    for (const source of copied) expect(ignored).not.toContain(source);
    expect(ignored).toEqual(expect.arrayContaining(['**/node_modules', 'dist']));
  });

  it('copies into the build stage every file and folder `npm run build` reads', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: { build: string } };
    const buildTsconfig = JSON.parse(read('tsconfig.build.json')) as { extends?: string; include?: string[] };
    // The paths the build script names (tsconfig.build.json, the SDK workspace, build scripts),
    // and what that tsconfig compiles and extends.
    const inputs = [
      ...pkg.scripts.build.split(/\s+/).filter((word) => /^[\w.-]+(\/[\w.-]+)*$/.test(word) && existsSync(path.join(ROOT, word))),
      ...(buildTsconfig.include ?? []),
      ...(buildTsconfig.extends ? [buildTsconfig.extends.replace(/^\.\//, '')] : []),
    ];
    expect(inputs).toEqual(expect.arrayContaining(['tsconfig.build.json', 'server']));
    for (const input of inputs) {
      const covered = copied.some((source) => input === source || input.startsWith(`${source.replace(/\/$/, '')}/`));
      expect({ input, covered }).toEqual({ input, covered: true });
    }
  });
});
