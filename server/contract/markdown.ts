import { ERROR_CODES, type ErrorChannel, type ErrorCode } from './error-codes';

/** Where a channel's codes appear, as docs/protocol.md words it. */
const CHANNEL_NAMES: Record<ErrorChannel, string> = {
  http: 'HTTP error',
  done: '`done.error`',
  expired: '`event: expired`',
};

function statusCell(code: ErrorCode): string {
  const spec: { status: number | null; execute?: string } = ERROR_CODES[code];
  if (spec.status !== null) return String(spec.status);
  return spec.execute === undefined ? '—' : `— (sync execute: ${ERROR_CODES[spec.execute as ErrorCode].status} \`${spec.execute}\`)`;
}

/** The error table of docs/protocol.md, from `ERROR_CODES`. */
export function errorCodeTable(): string {
  const rows = (Object.keys(ERROR_CODES) as ErrorCode[]).map((code) => {
    const spec = ERROR_CODES[code];
    const where = spec.channels.map((channel) => CHANNEL_NAMES[channel]).join(', ');
    return `| \`${code}\` | ${statusCell(code)} | ${where} | ${spec.meaning} |`;
  });
  return ['| code | status | where | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

const begin = (name: string) => `<!-- generated:${name} (npm run docs) -->`;
const end = (name: string) => `<!-- /generated:${name} -->`;

/** `markdown` with the text between the markers of section `name` replaced by `content`. */
export function replaceGeneratedSection(markdown: string, name: string, content: string): string {
  const from = markdown.indexOf(begin(name));
  const to = markdown.indexOf(end(name));
  if (from === -1 || to < from) throw new Error(`no generated section "${name}" (${begin(name)} … ${end(name)})`);
  return `${markdown.slice(0, from)}${begin(name)}\n${content}\n${markdown.slice(to)}`;
}

/** The content of section `name` of `markdown`, as `replaceGeneratedSection` wrote it. */
export function generatedSection(markdown: string, name: string): string {
  const from = markdown.indexOf(begin(name));
  const to = markdown.indexOf(end(name));
  if (from === -1 || to < from) throw new Error(`no generated section "${name}"`);
  return markdown.slice(from + begin(name).length + 1, to - 1);
}
