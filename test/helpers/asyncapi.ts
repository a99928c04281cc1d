import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { createParser } from 'eventsource-parser';
import YAML from 'yaml';

/** docs/asyncapi.yaml, as committed. */
export const ASYNCAPI_PATH = path.resolve(__dirname, '..', '..', 'docs', 'asyncapi.yaml');

type Doc = Record<string, any>;

const doc: Doc = YAML.parse(readFileSync(ASYNCAPI_PATH, 'utf8'));
const DOC_ID = 'asyncapi.yaml';
// AsyncAPI's default schema format is a superset of JSON Schema draft-07: Ajv's default dialect.
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, DOC_ID);

/** One frame of an SSE body: an event with its SSE fields, or a comment. */
export interface SseFrame {
  /** The SSE fields, as the message's `headers` describe them. */
  fields: { event?: string; id?: string; comment?: string };
  data?: string;
}

/** The frames of a whole SSE body, in order. */
export function sseFrames(text: string): SseFrame[] {
  const frames: SseFrame[] = [];
  const parser = createParser({
    onEvent: ({ event, id, data }) =>
      frames.push({ fields: { ...(event !== undefined && { event }), ...(id !== undefined && { id }) }, data }),
    onComment: (comment) => frames.push({ fields: { comment: comment.trim() } }),
  });
  parser.feed(text);
  return frames;
}

const messages: Record<string, Doc> = doc.components.messages;

/** The message of docs/asyncapi.yaml a frame is: by its `event:` name, its comment, or the default message. */
function messageOf(frame: SseFrame): [string, Doc] | undefined {
  return Object.entries(messages).find(([, message]) => {
    const fields = message.headers.properties;
    if (frame.fields.comment !== undefined) return fields.comment?.const === frame.fields.comment;
    if (frame.fields.event === undefined) return fields.event === undefined && fields.comment === undefined;
    return fields.event?.const === frame.fields.event;
  });
}

function validateAt(location: string, value: unknown): string[] {
  const validate = ajv.getSchema(`${DOC_ID}#/${location}`) ?? ajv.compile({ $ref: `${DOC_ID}#/${location}` });
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => `${error.instancePath || '(root)'} ${error.message} ${JSON.stringify(error.params)}`);
}

/**
 * What is wrong with the frames of an SSE body against docs/asyncapi.yaml: a frame that is
 * no message of it, SSE fields off the message's headers, a payload off its schema. Returns
 * the names of the messages seen, in order, with the problems.
 */
export function asyncApiViolations(text: string): { seen: string[]; problems: string[] } {
  const seen: string[] = [];
  const problems: string[] = [];
  for (const [index, frame] of sseFrames(text).entries()) {
    const match = messageOf(frame);
    if (match === undefined) {
      problems.push(`frame ${index} (${JSON.stringify(frame.fields)}) is no message of docs/asyncapi.yaml`);
      continue;
    }
    const [name, message] = match;
    seen.push(name);
    const at = `frame ${index} (${name})`;
    problems.push(...validateAt(`components/messages/${name}/headers`, frame.fields).map((p) => `${at} fields: ${p}`));
    if (message.payload !== undefined) {
      let payload: unknown;
      try {
        payload = JSON.parse(frame.data ?? '');
      } catch {
        problems.push(`${at}: data is not JSON: ${frame.data}`);
        continue;
      }
      problems.push(...validateAt(`components/messages/${name}/payload`, payload).map((p) => `${at} payload${p}`));
    }
  }
  return { seen, problems };
}

/** Fails the test unless every frame of `text` is a message of docs/asyncapi.yaml; returns the message names seen. */
export function expectAsyncApi(text: string): string[] {
  const { seen, problems } = asyncApiViolations(text);
  if (problems.length > 0) throw new Error(`the stream does not match docs/asyncapi.yaml:\n  ${problems.join('\n  ')}`);
  return seen;
}
