import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { schemas as asyncApiSchemas } from '@asyncapi/specs';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import YAML from 'yaml';
import { CONFIG_SETTINGS, DEFAULT_CONFIG, loadConfig, type Config } from '../../server/config';
import { asyncApiDocument } from '../../server/contract/asyncapi';
import { ERROR_CODES, errorCodes, type ErrorCode } from '../../server/contract/error-codes';
import { errorCodeTable, generatedSection } from '../../server/contract/markdown';
import { openApiDocument } from '../../server/contract/openapi';
import { ASYNCAPI_PATH } from '../helpers/asyncapi';
import { OPENAPI_PATH } from '../helpers/openapi';

const ROOT = path.resolve(__dirname, '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const { version } = JSON.parse(read('package.json')) as { version: string };
const committed = (file: string) => YAML.parse(readFileSync(file, 'utf8')) as Record<string, any>;

describe('docs/ is what the code generates (npm run docs)', () => {
  it('docs/openapi.yaml equals the document built from the wire schemas and the error table', () => {
    expect(committed(OPENAPI_PATH)).toEqual(openApiDocument(version));
  });

  it('docs/asyncapi.yaml equals the document built from the wire schemas', () => {
    expect(committed(ASYNCAPI_PATH)).toEqual(asyncApiDocument(version));
  });

  it("docs/protocol.md's error table is the error table in code", () => {
    expect(generatedSection(read('docs/protocol.md'), 'error-codes')).toBe(errorCodeTable());
  });
});

describe('docs/openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document (its official JSON schema, every $ref resolving)', async () => {
    const api = (await SwaggerParser.validate(committed(OPENAPI_PATH) as never)) as { openapi: string };
    expect(api.openapi).toBe('3.1.0');
  });

  it('the validator rejects a broken document (so the check above can fail)', async () => {
    const broken = committed(OPENAPI_PATH);
    broken.paths['/execute'].post.responses['200'].content['application/json'].schema = { $ref: '#/components/schemas/Nope' };
    await expect(SwaggerParser.validate(broken as never)).rejects.toThrow(/Nope/);
    const badStatus = committed(OPENAPI_PATH);
    badStatus.paths['/healthz'].get.responses = { ok: { description: 'x' } };
    await expect(SwaggerParser.validate(badStatus as never)).rejects.toThrow();
  });

  it('declares every HTTP error code of the table on some operation, with the status the table gives it', () => {
    const declared = new Map<string, Set<string>>();
    for (const operations of Object.values<Record<string, any>>(committed(OPENAPI_PATH).paths)) {
      for (const operation of Object.values<any>(operations)) {
        for (const [status, response] of Object.entries<any>(operation.responses)) {
          const codes: string[] = response.content?.['application/json']?.schema?.allOf?.[1]?.properties.error.properties.code.enum ?? [];
          for (const code of codes) declared.set(code, (declared.get(code) ?? new Set()).add(status));
        }
      }
    }
    // `not_found` and `method_not_allowed` answer paths and methods the document does not have.
    const expected = errorCodes('http').filter((code) => code !== 'method_not_allowed');
    expect([...declared.keys()].sort()).toEqual([...expected].sort());
    for (const [code, statuses] of declared) expect([...statuses]).toEqual([String(ERROR_CODES[code as ErrorCode].status)]);
  });
});

describe('docs/asyncapi.yaml', () => {
  // The AsyncAPI 3.0.0 schema embeds the draft-07 meta-schema itself; Ajv must not add its own.
  const validator = () => {
    const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
    addFormats(ajv);
    return ajv.compile(asyncApiSchemas['3.0.0'] as object);
  };

  it('is a valid AsyncAPI 3.0 document (its official JSON schema)', () => {
    const validate = validator();
    const document = committed(ASYNCAPI_PATH);
    expect(document.asyncapi).toBe('3.0.0');
    expect({ valid: validate(document), errors: validate.errors ?? null }).toEqual({ valid: true, errors: null });
  });

  it('the validator rejects a broken document (so the check above can fail)', () => {
    const validate = validator();
    const broken = committed(ASYNCAPI_PATH);
    broken.operations.followSession.action = 'listen';
    expect(validate(broken)).toBe(false);
  });

  it("has one message per frame kind of the stream, and done's error codes are the table's", () => {
    const document = committed(ASYNCAPI_PATH);
    expect(Object.keys(document.components.messages)).toEqual(['ready', 'timelineEvent', 'done', 'gap', 'expired', 'keepAlive']);
    // `done` is a union on `status`; only `failed` carries an error.
    const variants = document.components.schemas.DonePayload.oneOf as Array<{ properties: Record<string, any> }>;
    expect(variants.map((variant) => variant.properties.status.const)).toEqual(['completed', 'failed', 'cancelled']);
    const doneError = variants[1].properties.error;
    expect(doneError.properties.code.enum).toEqual(errorCodes('done'));
    expect(document.components.schemas.ExpiredPayload.properties.code.const).toBe('idle_timeout');
  });
});

describe('the error table', () => {
  it('has snake_case codes, a meaning for each, and sends each done-only code to an HTTP code for a synchronous execute', () => {
    for (const [code, spec] of Object.entries(ERROR_CODES) as Array<[ErrorCode, (typeof ERROR_CODES)[ErrorCode]]>) {
      expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(spec.meaning.length).toBeGreaterThan(10);
      expect(spec.channels.length).toBeGreaterThan(0);
      const execute = (spec as { execute?: string }).execute;
      if (spec.status === null && spec.channels.includes('done' as never)) {
        expect(errorCodes('http')).toContain(execute);
      } else {
        expect(execute).toBeUndefined();
      }
    }
  });

  it('is where every error code in server code comes from (no `code:` value the table lacks)', () => {
    const files = execFileSync('git', ['ls-files', 'server'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((file) => file.endsWith('.ts') && file !== 'server/contract/error-codes.ts');
    const defined = new Map<string, string[]>();
    for (const file of files) {
      const source = read(file);
      // A code as an object value (`code: 'x'`) or a status-like pairing is a code defined outside the table.
      for (const match of source.matchAll(/\bcode:\s*'([a-z_]+)'/g)) {
        defined.set(match[1], [...(defined.get(match[1]) ?? []), file]);
      }
    }
    const unknown = [...defined.keys()].filter((code) => !(code in ERROR_CODES));
    expect(unknown).toEqual([]);
  });
});

describe('README and docs/', () => {
  const trackedText = () =>
    execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((file) => file !== '' && !/\.(png|svg|ico)$/.test(file) && file !== 'package-lock.json');

  it("nothing in the repository points outside it (the team's shared folder or design file)", () => {
    const outside = /\.\.\/shared|DESIGN\.md/;
    const offenders = trackedText().filter((file) => outside.test(read(file)));
    expect(offenders).toEqual([]);
  });

  it('README links the protocol reference and both API documents, and names every error code', () => {
    const readme = read('README.md');
    for (const link of ['docs/protocol.md', 'docs/openapi.yaml', 'docs/asyncapi.yaml']) expect(readme).toContain(`](${link}`);
    const missing = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((code) => !readme.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });

  /** The rows of the table of the `## Configuration` section, as [variables, default]. */
  const configRows = (markdown: string) =>
    [...(/^## Configuration\n[\s\S]*?(?=^## |(?![\s\S]))/m.exec(markdown)?.[0] ?? '').matchAll(/^\| ((?:`[A-Z0-9_]+`(?:, )?)+) \| ([^|]+) \|/gm)].map(
      (match) => [[...match[1].matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]), match[2].trim()] as const,
    );

  const settingOf = (variable: string) =>
    (Object.keys(CONFIG_SETTINGS) as Array<keyof Config>).find((key) => CONFIG_SETTINGS[key].variable === variable);

  it.each(['README.md', 'docs/protocol.md'])('%s lists every configuration variable once, with the default the code has', (file) => {
    const rows = configRows(read(file));
    const variables = rows.flatMap(([names]) => names);
    expect([...variables].sort()).toEqual(Object.values(CONFIG_SETTINGS).map((s) => s.variable).sort());
    for (const [names, cell] of rows) {
      for (const variable of names) {
        const setting = settingOf(variable)!;
        // The documented default, read by the variable's own rules, is the default in code.
        const value = /^`([^`]+)`$/.exec(cell)?.[1];
        if (value === undefined) expect({ variable, default: DEFAULT_CONFIG[setting] }).toEqual({ variable, default: null });
        else expect({ variable, default: loadConfig({ [variable]: value })[setting] }).toEqual({ variable, default: DEFAULT_CONFIG[setting] });
      }
    }
  });
});
