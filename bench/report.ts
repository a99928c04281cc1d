import type { RunMeasurement } from './protocol';
import { logLogSlope, spread, type Spread } from './stats';

export type Kind = 'service' | 'baseline';

/** One measured run of a load scenario on one target: the client's counts, its samples reduced to figures. */
export interface LoadRecord extends Omit<RunMeasurement, 'latencyMs' | 'ttfeMs' | 'elapsedMs'> {
  scenario: string;
  target: Kind;
  rep: number;
  latencyP50: number;
  latencyP99: number;
  latencyMax: number;
  ttfeP50: number;
  ttfeP99: number;
  /** Timeline events received per second, first POST to last `done`. */
  throughput: number;
  /** CPU seconds of both server processes per 1,000 events received. */
  cpuPer1k: number;
  /** The part of `cpuPer1k` spent by the instance holding the streams. */
  cpuStreamsPer1k: number;
  /** The part of `cpuPer1k` spent by the instance running the workflows (`POST /execute`, publishing). */
  cpuRunsPer1k: number;
  /** CPU seconds of redis-server per 1,000 events received. */
  redisCpuPer1k: number;
  /** Peak RSS during the run of the instance holding the streams, MiB. */
  rssStreamsMiB: number;
  /** Peak RSS during the run of the instance running the workflows, MiB. */
  rssRunsMiB: number;
  /**
   * Stream readers that fell `MAX_BUFFERED_BYTES` behind during the run and caught up from the
   * log (the service's `timeline_slow_readers_caught_up_total`; `NaN` for the baseline).
   */
  caughtUp: number;
}

/** One point of the growth curve (scenario e). */
export interface GrowthRecord {
  target: Kind;
  rep: number;
  streams: number;
  latencyP50: number;
  latencyP99: number;
  rssMiB: number;
  /** (RSS at this point − RSS before any stream) / streams. */
  rssPerStreamKiB: number;
  /** CPU ms of the stream instance per stream opened in this step. */
  openCpuMsPerStream: number;
  openFailures: number;
  completeSessions: number;
  sessions: number;
}

/** One scenario under stalled readers (f): what the stream instance's RSS grew by per stalled reader. */
export interface StalledRecord {
  target: Kind;
  rep: number;
  readers: number;
  /** Bytes published to each stalled reader. */
  bytesPerReader: number;
  /** RSS of the stream instance with every stream open, before the runs, MiB. */
  rssBeforeMiB: number;
  /** Peak RSS of the stream instance during and just after the runs, MiB. */
  rssPeakMiB: number;
  /** (peak − before) / stalled readers, KiB. */
  growthPerReaderKiB: number;
  completeSessions: number;
  sessions: number;
}

interface Metric {
  key: keyof LoadRecord;
  label: string;
  digits: number;
  /** The service/baseline ratio the issue asks for, in the scenarios it names (all when unset). */
  target?: { op: '<=' | '>='; ratio: number; scenarios?: string[] };
}

const METRICS: Metric[] = [
  { key: 'latencyP50', label: 'latency p50 ms', digits: 2 },
  // In b the baseline's p99 is queueing in its socket buffers, not the event path (README).
  { key: 'latencyP99', label: 'latency p99 ms', digits: 2, target: { op: '<=', ratio: 1.3, scenarios: ['a', 'c'] } },
  { key: 'throughput', label: 'throughput events/s', digits: 0, target: { op: '>=', ratio: 0.8, scenarios: ['b'] } },
  { key: 'ttfeP50', label: 'first event p50 ms', digits: 2 },
  { key: 'ttfeP99', label: 'first event p99 ms', digits: 2, target: { op: '<=', ratio: 1.5 } },
  { key: 'cpuPer1k', label: 'server CPU s/1k events', digits: 3, target: { op: '<=', ratio: 1.3 } },
  { key: 'cpuStreamsPer1k', label: '  of which streams inst.', digits: 3 },
  { key: 'cpuRunsPer1k', label: '  of which runs inst.', digits: 3 },
  { key: 'redisCpuPer1k', label: 'redis CPU s/1k events', digits: 3 },
  { key: 'rssStreamsMiB', label: 'RSS streams inst. MiB', digits: 0 },
  { key: 'rssRunsMiB', label: 'RSS runs inst. MiB', digits: 0 },
  { key: 'caughtUp', label: 'readers caught up from the log', digits: 0 },
];

export interface Verdict {
  scenario: string;
  metric: string;
  service: Spread;
  baseline: Spread;
  ratio: number;
  target: string;
  holds: boolean | null;
}

export interface Summary {
  verdicts: Verdict[];
  completeness: Array<{ scenario: string; target: Kind; complete: number; sessions: number; missing: number; duplicates: number }>;
  growth: Array<{ streams: number; service: Record<string, Spread>; baseline: Record<string, Spread> }>;
  growthVerdicts: Array<{ metric: string; value: number; target: string; holds: boolean }>;
  stalled: {
    readers: number;
    bytesPerReader: number;
    service: Record<string, Spread>;
    baseline: Record<string, Spread>;
    complete: Record<Kind, string>;
    verdict: { metric: string; value: number; target: string; holds: boolean };
  } | null;
}

/** Scenario `a` of a record titled `a. …`. */
const keyOf = (scenario: string) => scenario.split('.')[0];

const fmt = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const fmtSpread = (s: Spread, digits: number) =>
  s.values.length > 1 ? `${fmt(s.median, digits)} [${fmt(s.min, digits)}–${fmt(s.max, digits)}]` : fmt(s.median, digits);

function by<T extends { target: Kind }>(records: T[], target: Kind): T[] {
  return records.filter((record) => record.target === target);
}

export function summarize(load: LoadRecord[], growth: GrowthRecord[], stalled: StalledRecord[] = []): Summary {
  const verdicts: Verdict[] = [];
  const completeness: Summary['completeness'] = [];
  for (const scenario of [...new Set(load.map((record) => record.scenario))]) {
    const records = load.filter((record) => record.scenario === scenario);
    for (const metric of METRICS) {
      const service = spread(by(records, 'service').map((record) => record[metric.key] as number));
      const baseline = spread(by(records, 'baseline').map((record) => record[metric.key] as number));
      const ratio = service.median / baseline.median;
      const target = metric.target?.scenarios && !metric.target.scenarios.includes(keyOf(scenario)) ? undefined : metric.target;
      verdicts.push({
        scenario,
        metric: metric.label,
        service,
        baseline,
        ratio,
        target: target ? `${target.op} ${target.ratio}×` : '',
        holds: target && Number.isFinite(ratio) ? (target.op === '<=' ? ratio <= target.ratio : ratio >= target.ratio) : null,
      });
    }
    for (const target of ['service', 'baseline'] as const) {
      const mine = by(records, target);
      completeness.push({
        scenario,
        target,
        complete: mine.reduce((sum, record) => sum + record.completeSessions, 0),
        sessions: mine.reduce((sum, record) => sum + record.sessions, 0),
        missing: mine.reduce((sum, record) => sum + record.missing, 0),
        duplicates: mine.reduce((sum, record) => sum + record.duplicates, 0),
      });
    }
  }

  const points = [...new Set(growth.map((record) => record.streams))].sort((a, b) => a - b);
  const figures = (records: GrowthRecord[]) => ({
    latencyP50: spread(records.map((record) => record.latencyP50)),
    latencyP99: spread(records.map((record) => record.latencyP99)),
    rssMiB: spread(records.map((record) => record.rssMiB)),
    rssPerStreamKiB: spread(records.map((record) => record.rssPerStreamKiB)),
    openCpuMsPerStream: spread(records.map((record) => record.openCpuMsPerStream)),
  });
  const growthRows = points.map((streams) => {
    const at = growth.filter((record) => record.streams === streams);
    return { streams, service: figures(by(at, 'service')), baseline: figures(by(at, 'baseline')) };
  });
  const growthVerdicts: Summary['growthVerdicts'] = [];
  if (growthRows.length > 0) {
    const last = growthRows[growthRows.length - 1];
    growthVerdicts.push({
      metric: `service RSS per stream at ${last.streams} streams, KiB`,
      value: last.service.rssPerStreamKiB.median,
      target: '<= 20 KiB',
      holds: last.service.rssPerStreamKiB.median <= 20,
    });
    const slope = logLogSlope(growthRows.map((row) => [row.streams, row.service.latencyP99.median]));
    growthVerdicts.push({
      metric: 'service p99 latency growth, log-log slope over open streams',
      value: slope,
      target: '< 1 (sub-linear)',
      holds: slope < 1,
    });
  }
  return { verdicts, completeness, growth: growthRows, growthVerdicts, stalled: summarizeStalled(stalled) };
}

function summarizeStalled(records: StalledRecord[]): Summary['stalled'] {
  if (records.length === 0) return null;
  const figures = (mine: StalledRecord[]) => ({
    rssBeforeMiB: spread(mine.map((record) => record.rssBeforeMiB)),
    rssPeakMiB: spread(mine.map((record) => record.rssPeakMiB)),
    growthPerReaderKiB: spread(mine.map((record) => record.growthPerReaderKiB)),
  });
  const complete = (mine: StalledRecord[]) =>
    `${mine.reduce((sum, record) => sum + record.completeSessions, 0)}/${mine.reduce((sum, record) => sum + record.sessions, 0)}`;
  const service = figures(by(records, 'service'));
  return {
    readers: records[0].readers,
    bytesPerReader: records[0].bytesPerReader,
    service,
    baseline: figures(by(records, 'baseline')),
    complete: { service: complete(by(records, 'service')), baseline: complete(by(records, 'baseline')) },
    verdict: {
      metric: 'service RSS growth per stalled reader, KiB',
      value: service.growthPerReaderKiB.median,
      target: '<= 64 KiB',
      holds: service.growthPerReaderKiB.median <= 64,
    },
  };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n');
}

const mark = (holds: boolean | null) => (holds === null ? '' : holds ? 'holds' : 'MISSES');

export function renderTable(summary: Summary): string {
  const out: string[] = [];
  for (const scenario of [...new Set(summary.verdicts.map((verdict) => verdict.scenario))]) {
    out.push(`\n== ${scenario}`);
    const rows = [['metric', 'service median [min–max]', 'baseline median [min–max]', 'ratio', 'target', '']];
    for (const verdict of summary.verdicts.filter((v) => v.scenario === scenario)) {
      const digits = METRICS.find((metric) => metric.label === verdict.metric)?.digits ?? 2;
      rows.push([
        verdict.metric,
        fmtSpread(verdict.service, digits),
        fmtSpread(verdict.baseline, digits),
        fmt(verdict.ratio, 2),
        verdict.target,
        mark(verdict.holds),
      ]);
    }
    for (const c of summary.completeness.filter((entry) => entry.scenario === scenario)) {
      rows.push([`complete sessions (${c.target})`, `${c.complete}/${c.sessions}`, `missing ${c.missing}, dup ${c.duplicates}`, '', 'all', mark(c.complete === c.sessions)]);
    }
    out.push(table(rows));
  }
  if (summary.growth.length > 0) {
    out.push('\n== e. growth: open streams on one instance (idle streams + 20 probe sessions)');
    const rows = [['streams', 'svc p99 ms', 'base p99 ms', 'ratio', 'svc RSS MiB', 'base RSS MiB', 'svc KiB/stream', 'base KiB/stream', 'svc open CPU ms/stream', 'base open CPU ms/stream']];
    for (const row of summary.growth) {
      rows.push([
        String(row.streams),
        fmtSpread(row.service.latencyP99, 2),
        fmtSpread(row.baseline.latencyP99, 2),
        fmt(row.service.latencyP99.median / row.baseline.latencyP99.median, 2),
        fmtSpread(row.service.rssMiB, 0),
        fmtSpread(row.baseline.rssMiB, 0),
        fmtSpread(row.service.rssPerStreamKiB, 1),
        fmtSpread(row.baseline.rssPerStreamKiB, 1),
        fmtSpread(row.service.openCpuMsPerStream, 3),
        fmtSpread(row.baseline.openCpuMsPerStream, 3),
      ]);
    }
    out.push(table(rows));
    out.push(table(summary.growthVerdicts.map((v) => [v.metric, fmt(v.value, 2), v.target, mark(v.holds)])));
  }
  const stalled = summary.stalled;
  if (stalled) {
    out.push(
      `\n== f. ${stalled.readers} stalled readers (open, never read) on runs of ${(stalled.bytesPerReader / 2 ** 20).toFixed(2)} MiB each`,
    );
    const rows = [['metric', 'service median [min–max]', 'baseline median [min–max]']];
    rows.push(['RSS streams inst. before runs MiB', fmtSpread(stalled.service.rssBeforeMiB, 0), fmtSpread(stalled.baseline.rssBeforeMiB, 0)]);
    rows.push(['RSS streams inst. peak MiB', fmtSpread(stalled.service.rssPeakMiB, 0), fmtSpread(stalled.baseline.rssPeakMiB, 0)]);
    rows.push(['RSS growth per stalled reader KiB', fmtSpread(stalled.service.growthPerReaderKiB, 1), fmtSpread(stalled.baseline.growthPerReaderKiB, 1)]);
    rows.push(['complete sessions (readers that read)', stalled.complete.service, stalled.complete.baseline]);
    out.push(table(rows));
    const v = stalled.verdict;
    out.push(table([[v.metric, fmt(v.value, 1), v.target, mark(v.holds)]]));
  }
  return out.join('\n');
}

/** The growth curve as a hand-written SVG: p99 latency and RSS per stream over open streams (log x). */
export function renderGrowthSvg(summary: Summary, caption: string): string {
  const width = 920;
  const height = 380;
  const panels = [
    { title: 'p99 event latency (ms)', pick: (f: Record<string, Spread>) => f.latencyP99 },
    { title: 'RSS of the stream instance (MiB)', pick: (f: Record<string, Spread>) => f.rssMiB },
  ];
  const colours: Record<Kind, string> = { service: '#1f6feb', baseline: '#d9822b' };
  const rows = summary.growth;
  const xs = rows.map((row) => row.streams);
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">Growth: open streams on one instance (medians, bars = min–max)</text>`,
    `<text x="${width / 2}" y="${height - 8}" text-anchor="middle" fill="#555">${escapeXml(caption)}</text>`,
  ];
  panels.forEach((panel, index) => {
    const left = 70 + index * (width / 2);
    const top = 45;
    const w = width / 2 - 110;
    const h = height - 120;
    const values = rows.flatMap((row) => (['service', 'baseline'] as const).map((kind) => panel.pick(row[kind]).max)).filter(Number.isFinite);
    const yMax = niceCeil(Math.max(1e-9, ...values));
    const x = (streams: number) => left + (xMax === xMin ? w / 2 : ((Math.log(streams) - Math.log(xMin)) / (Math.log(xMax) - Math.log(xMin))) * w);
    const y = (value: number) => top + h - (value / yMax) * h;
    parts.push(`<text x="${left + w / 2}" y="${top - 8}" text-anchor="middle">${panel.title}</text>`);
    parts.push(`<line x1="${left}" y1="${top + h}" x2="${left + w}" y2="${top + h}" stroke="#333"/>`);
    parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + h}" stroke="#333"/>`);
    for (let tick = 0; tick <= 4; tick++) {
      const value = (yMax * tick) / 4;
      parts.push(`<line x1="${left - 4}" y1="${y(value)}" x2="${left + w}" y2="${y(value)}" stroke="#eee"/>`);
      parts.push(`<text x="${left - 6}" y="${y(value) + 4}" text-anchor="end">${+value.toPrecision(3)}</text>`);
    }
    for (const streams of xs) {
      parts.push(`<text x="${x(streams)}" y="${top + h + 16}" text-anchor="middle">${streams}</text>`);
    }
    parts.push(`<text x="${left + w / 2}" y="${top + h + 34}" text-anchor="middle">open streams (log scale)</text>`);
    for (const kind of ['service', 'baseline'] as const) {
      const points = rows.map((row) => ({ streams: row.streams, s: panel.pick(row[kind]) })).filter((p) => Number.isFinite(p.s.median));
      parts.push(
        `<polyline fill="none" stroke="${colours[kind]}" stroke-width="2" points="${points.map((p) => `${x(p.streams).toFixed(1)},${y(p.s.median).toFixed(1)}`).join(' ')}"/>`,
      );
      for (const p of points) {
        parts.push(`<line x1="${x(p.streams)}" y1="${y(p.s.min)}" x2="${x(p.streams)}" y2="${y(p.s.max)}" stroke="${colours[kind]}"/>`);
        parts.push(`<circle cx="${x(p.streams)}" cy="${y(p.s.median)}" r="3" fill="${colours[kind]}"/>`);
      }
    }
    (['service', 'baseline'] as const).forEach((kind, i) => {
      parts.push(`<rect x="${left + 10}" y="${top + 8 + i * 16}" width="12" height="3" fill="${colours[kind]}"/>`);
      parts.push(`<text x="${left + 28}" y="${top + 13 + i * 16}">${kind}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

function niceCeil(value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
