import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { Response } from 'supertest';
import YAML from 'yaml';

/** docs/openapi.yaml, as committed. */
export const OPENAPI_PATH = path.resolve(__dirname, '..', '..', 'docs', 'openapi.yaml');

type Doc = Record<string, any>;

const doc: Doc = YAML.parse(readFileSync(OPENAPI_PATH, 'utf8'));
const DOC_ID = 'openapi.yaml';
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
// The document as one schema: every `#/components/...` reference inside it resolves as in the file.
ajv.addSchema(doc, DOC_ID);

const pointer = (...parts: string[]) => parts.map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

function validateAt(location: string, value: unknown): string[] {
  const validate = ajv.getSchema(`${DOC_ID}#/${location}`) ?? ajv.compile({ $ref: `${DOC_ID}#/${location}` });
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => `${error.instancePath || '(root)'} ${error.message} ${JSON.stringify(error.params)}`);
}

/** The template of docs/openapi.yaml's paths that `requestPath` (no query) matches, literal segments first. */
function templateOf(requestPath: string): string | undefined {
  const templates = Object.keys(doc.paths).sort((a, b) => a.split('{').length - b.split('{').length);
  return templates.find((template) => {
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+');
    return new RegExp(`^${pattern}$`).test(requestPath);
  });
}

/** A response as these checks read it: supertest's, or a real-socket reader's. */
export interface ObservedResponse {
  method: string;
  /** The request path, with or without its query. */
  path: string;
  status: number;
  /** Lower-case names. */
  headers: Record<string, string | string[] | undefined>;
  /** The raw body. */
  text: string;
}

export function observed(response: Response): ObservedResponse {
  const req = (response as unknown as { req: { method: string; path: string } }).req;
  return { method: req.method, path: req.path, status: response.status, headers: response.headers, text: response.text ?? '' };
}

const single = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join(', ') : value);

/**
 * What is wrong with `response` against docs/openapi.yaml: an undeclared status, a declared
 * required header missing or off its schema, a content type not declared, or a JSON body off
 * its schema. A path the document does not have must be a `404 not_found` error body; a method
 * it does not have on a known path, a `405 method_not_allowed` with `Allow`.
 */
export function openApiViolations(response: ObservedResponse): string[] {
  const requestPath = response.path.split('?')[0];
  const method = response.method.toLowerCase();
  const template = templateOf(requestPath);
  const contentType = single(response.headers['content-type'])?.split(';')[0].trim();
  const json = (): unknown => JSON.parse(response.text);
  if (template === undefined || doc.paths[template][method] === undefined) {
    const expected = template === undefined ? ['not_found', 404] : ['method_not_allowed', 405];
    const problems = validateAt('components/schemas/ErrorBody', json());
    if (response.status !== expected[1] || (json() as Doc).error?.code !== expected[0]) {
      problems.push(`${response.method} ${requestPath} is not in the document: expected ${expected[1]} ${expected[0]}, got ${response.status} ${response.text}`);
    }
    if (expected[1] === 405 && response.headers.allow === undefined) problems.push('405 without Allow');
    return problems;
  }
  const where = pointer('paths', template, method, 'responses', String(response.status));
  const declared = doc.paths[template][method].responses[String(response.status)];
  if (declared === undefined) return [`${response.method} ${template} does not declare status ${response.status} (body: ${response.text.slice(0, 200)})`];
  const problems: string[] = [];
  for (const [name, header] of Object.entries<Doc>(declared.headers ?? {})) {
    const value = single(response.headers[name.toLowerCase()]);
    if (value === undefined) {
      if (header.required) problems.push(`missing required header ${name}`);
      continue;
    }
    problems.push(...validateAt(`${where}/${pointer('headers', name, 'schema')}`, value).map((p) => `header ${name}: ${p}`));
  }
  if (declared.content === undefined) {
    if (response.text !== '') problems.push(`status ${response.status} declares no body, got ${response.text.slice(0, 100)}`);
    return problems;
  }
  if (contentType === undefined || declared.content[contentType] === undefined) {
    return [...problems, `content type ${contentType} not declared (declared: ${Object.keys(declared.content).join(', ')})`];
  }
  if (contentType === 'application/json') {
    problems.push(...validateAt(`${where}/${pointer('content', contentType, 'schema')}`, json()).map((p) => `body${p}`));
  }
  return problems;
}

/** Fails the test, saying why, unless `response` matches docs/openapi.yaml. */
export function expectOpenApi(response: Response | ObservedResponse): void {
  const seen = 'req' in response ? observed(response as Response) : (response as ObservedResponse);
  const problems = openApiViolations(seen);
  if (problems.length > 0) {
    throw new Error(`${seen.method} ${seen.path} → ${seen.status} does not match docs/openapi.yaml:\n  ${problems.join('\n  ')}`);
  }
}
