import { z } from 'zod';
import { NAMED_SCHEMAS } from './wire-schemas';

/** A JSON Schema, as plain data. */
export type JsonSchema = Record<string, unknown>;

export type SchemaDialect = 'draft-2020-12' | 'draft-07';

/** Where named schemas live in both documents. */
export const schemaRef = (name: SchemaName): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

/** Keeps generated schemas readable: no zod-internal bounds or the long pattern zod pairs with `format`. */
function tidy({ jsonSchema }: { jsonSchema: JsonSchema }): void {
  if (jsonSchema.format === 'date-time') delete jsonSchema.pattern;
  if (jsonSchema.maximum === Number.MAX_SAFE_INTEGER) delete jsonSchema.maximum;
  if (jsonSchema.minimum === Number.MIN_SAFE_INTEGER) delete jsonSchema.minimum;
}

export type SchemaName = keyof typeof NAMED_SCHEMAS;

/**
 * Named wire schemas (`names`, default all) as JSON Schemas, referring to each other by
 * `#/components/schemas/<name>`.
 */
export function componentSchemas(dialect: SchemaDialect, names = Object.keys(NAMED_SCHEMAS) as SchemaName[]): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const id of names) registry.add(NAMED_SCHEMAS[id], { id });
  const { schemas } = z.toJSONSchema(registry, {
    target: dialect,
    uri: (id) => `#/components/schemas/${id}`,
    override: tidy,
  });
  return Object.fromEntries(
    Object.entries(schemas).map(([id, { $schema: _dialect, $id: _id, ...schema }]) => [id, schema as JsonSchema]),
  );
}

/** One schema, inlined (nothing it uses is referred to by name). */
export function inlineSchema(schema: z.ZodType, dialect: SchemaDialect): JsonSchema {
  const json = z.toJSONSchema(schema, { target: dialect, override: tidy }) as JsonSchema;
  delete json.$schema;
  return json;
}
