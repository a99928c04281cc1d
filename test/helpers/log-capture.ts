import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { Waiters } from './wait';

/** A log line as pino wrote it: the parsed JSON record. */
export type LogRecord = Record<string, unknown> & { msg?: string };

export interface CapturedLog {
  /** A logger (at `trace`, the most verbose level) whose lines the test can search. */
  log: Logger;
  /** Every line as written. */
  lines: string[];
  text(): string;
  /** Every line, parsed. */
  records(): LogRecord[];
  /** Resolves with the first record `match` accepts, once it is written (lines written after the response, say). */
  waitFor(match: (record: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
}

/** Every line a service logs, so a test can search them. */
export function capturedLog(): CapturedLog {
  const lines: string[] = [];
  const waiters = new Waiters();
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'));
      waiters.notify();
      callback();
    },
  });
  const records = () => lines.map((line) => JSON.parse(line) as LogRecord);
  return {
    log: pino({ level: 'trace' }, destination),
    lines,
    text: () => lines.join(''),
    records,
    waitFor: (match, timeoutMs = 5000) =>
      waiters.until(() => records().find(match), timeoutMs, () => `a matching log line among:\n${lines.join('')}`),
  };
}
