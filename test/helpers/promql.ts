/** Words of PromQL that look like metric names but are not. */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads: what is left once strings, label matchers,
 * range and subquery brackets, grouping label lists and Grafana variables are taken out, minus
 * function names (followed by `(`), keywords and the letters of numbers (`1e3`). Enough for
 * the expressions of alert rules and dashboards; not a PromQL parser.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  for (const match of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const start = match.index ?? 0;
    const before = bare[start - 1] ?? ' ';
    const after = bare.slice(start + match[0].length).trimStart();
    if (/[0-9.]/.test(before) || after.startsWith('(') || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names];
}

/**
 * The series names a Prometheus text exposition offers, from its `# TYPE` lines (present even
 * before a labelled metric has a sample): a histogram's `_bucket`, `_sum` and `_count`, a
 * summary's `_sum` and `_count` besides its own name.
 */
export function exposedSeries(text: string): Set<string> {
  const names = new Set<string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = match;
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(name + suffix);
    else names.add(name);
  }
  return names;
}
