import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { Metrics } from '../../server/metrics';
import { request } from '../helpers/api';
import { exposedSeries, metricNames } from '../helpers/promql';
import { startService } from '../helpers/service';

/**
 * What an operator plugs in (deploy/alerts.yml, deploy/prometheus.yml, the Grafana dashboard)
 * is checked against the metrics a live service exports, so a renamed metric cannot leave an
 * alert that never fires or an empty panel. `promtool` (Debian's `prometheus` package) also
 * checks and unit-tests the rules where it is installed.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ refId: string; expr: string; datasource?: { uid: string } }>;
}

const alertRules = (parse(read('deploy/alerts.yml')) as { groups: Array<{ name: string; rules: AlertRule[] }> }).groups.flatMap((g) => g.rules);
const dashboard = JSON.parse(read('deploy/grafana/dashboards/timeline.json')) as {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query: unknown }> };
};
const queries = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));

/** `promtool`, where installed (`.ci/run` installs it); `null` elsewhere. */
const promtool = (() => {
  const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : null;
})();

function runPromtool(...args: string[]) {
  const result = spawnSync(promtool as string, args, { cwd: ROOT, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** Every series name a live service offers on /metrics (process metrics included), and Prometheus's own `up`. */
let exported: Set<string>;

beforeAll(async () => {
  const svc = await startService({ keepAliveMs: null }, { metrics: new Metrics() });
  try {
    exported = exposedSeries((await request(`${svc.url}/metrics`)).text);
  } finally {
    await svc.close();
  }
  exported.add('up');
});

describe('metricNames (PromQL)', () => {
  it('finds the metrics an expression reads, not its functions, labels, durations or variables', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, workflow) (rate(a_seconds_bucket{instance=~"$instance", x="y{z}"}[$__rate_interval])))')).toEqual(['a_seconds_bucket']);
    expect(metricNames('sum(rate(b_total{outcome="failed"}[15m])) / sum(rate(b_total[15m])) > 0.2')).toEqual(['b_total']);
    expect(metricNames('max by (instance) (c) > 3e2 and on (instance) d offset 5m')).toEqual(['c', 'd']);
    expect(metricNames('up{job="timeline"} == 0')).toEqual(['up']);
  });
});

describe('deploy/alerts.yml', () => {
  it('has alerts for a stuck run, the bus down, readers being cut and a p99 over its budget', () => {
    const reading = (metric: string) => alertRules.filter((rule) => metricNames(rule.expr).includes(metric)).map((rule) => rule.alert);
    expect(reading('timeline_run_longest_idle_seconds')).toEqual(['TimelineRunStuck']);
    expect(reading('timeline_bus_up')).toEqual(['TimelineBusDown']);
    expect(reading('timeline_slow_readers_closed_total')).toEqual(['TimelineReadersCut']);
    const p99 = alertRules.filter((rule) => /histogram_quantile\(0\.99,/.test(rule.expr)).map((rule) => rule.alert);
    expect(p99).toEqual(['TimelinePublishToWriteP99High', 'TimelineFirstEventP99High']);
  });

  it('reads only metrics the service exports', () => {
    for (const rule of alertRules) {
      const unknown = metricNames(rule.expr).filter((name) => !exported.has(name));
      expect({ alert: rule.alert, unknown }).toEqual({ alert: rule.alert, unknown: [] });
    }
  });

  it('gives every rule a unique name, a hold time, a severity and a summary', () => {
    expect(new Set(alertRules.map((rule) => rule.alert)).size).toBe(alertRules.length);
    for (const rule of alertRules) {
      expect({ alert: rule.alert, for: rule.for, severity: rule.labels?.severity, summary: typeof rule.annotations?.summary }).toEqual({
        alert: rule.alert,
        for: expect.stringMatching(/^\d+[smh]$/),
        severity: expect.stringMatching(/^(critical|warning)$/),
        summary: 'string',
      });
    }
  });

  // Without promtool, the checks above (the YAML parses into rules reading exported metrics) are what runs.
  (promtool ? it : it.skip)('passes promtool check rules, and its unit tests fire each alert when it should', () => {
    expect(runPromtool('check', 'rules', 'deploy/alerts.yml')).toEqual({ status: 0, output: expect.stringContaining('SUCCESS') });
    expect(runPromtool('test', 'rules', 'test/fixtures/alerts.promtool-test.yml')).toEqual({ status: 0, output: expect.stringContaining('SUCCESS') });
  });
});

describe('deploy/prometheus.yml', () => {
  const config = parse(read('deploy/prometheus.yml')) as {
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
  };

  it('scrapes /metrics as job "timeline" (the job the alerts name) and loads the alert rules', () => {
    const [job] = config.scrape_configs;
    expect(config.scrape_configs).toHaveLength(1);
    expect(job.job_name).toBe('timeline');
    expect(job.metrics_path ?? '/metrics').toBe('/metrics');
    expect(alertRules.find((rule) => rule.alert === 'TimelineInstanceDown')?.expr).toContain('job="timeline"');
    expect(config.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
  });

  (promtool ? it : it.skip)('passes promtool check config (with the rule file where the compose file mounts it)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'prometheus-config-'));
    try {
      copyFileSync(path.join(ROOT, 'deploy/alerts.yml'), path.join(dir, 'alerts.yml'));
      writeFileSync(path.join(dir, 'prometheus.yml'), read('deploy/prometheus.yml').replace('/etc/prometheus/alerts.yml', path.join(dir, 'alerts.yml')));
      expect(runPromtool('check', 'config', path.join(dir, 'prometheus.yml'))).toEqual({ status: 0, output: expect.stringContaining('SUCCESS') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/grafana/dashboards/timeline.json', () => {
  it('queries only metrics the service exports', () => {
    expect(queries.length).toBeGreaterThan(10);
    for (const { panel, expr } of queries) {
      const names = metricNames(expr);
      expect({ panel, expr, names: names.length > 0 }).toEqual({ panel, expr, names: true });
      const unknown = names.filter((name) => !exported.has(name));
      expect({ panel, unknown }).toEqual({ panel, unknown: [] });
    }
  });

  it('shows every timeline_ metric the service exports', () => {
    const shown = new Set(queries.flatMap(({ expr }) => metricNames(expr)));
    const families = [...exported].filter((name) => name.startsWith('timeline_'));
    const missing = families.filter((name) => {
      const family = name.replace(/_(bucket|sum|count)$/, '');
      return ![...shown].some((query) => query === name || query.replace(/_(bucket|sum|count)$/, '') === family);
    });
    expect(missing).toEqual([]);
  });

  it('uses its data source variable everywhere, and filters by instance', () => {
    const variables = dashboard.templating.list.map((v) => `${v.name}:${v.type}`);
    expect(variables).toEqual(['datasource:datasource', 'instance:query']);
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      expect({ panel: panel.title, uid: panel.datasource?.uid }).toEqual({ panel: panel.title, uid: '${datasource}' });
      for (const target of panel.targets ?? []) expect(target.expr).toContain('instance=~"$instance"');
    }
  });

  it('lays its panels out on the 24-column grid without overlaps, with unique ids', () => {
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    const cells = new Set<string>();
    for (const { title, gridPos } of dashboard.panels) {
      expect({ title, fits: gridPos.x >= 0 && gridPos.x + gridPos.w <= 24 && gridPos.h > 0 }).toEqual({ title, fits: true });
      for (let x = gridPos.x; x < gridPos.x + gridPos.w; x++) {
        for (let y = gridPos.y; y < gridPos.y + gridPos.h; y++) {
          const cell = `${x},${y}`;
          expect({ title, cell, free: !cells.has(cell) }).toEqual({ title, cell, free: true });
          cells.add(cell);
        }
      }
    }
  });
});
