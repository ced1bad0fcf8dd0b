// Validates CLI output against the shipped JSON Schemas (schema/*.json) with Ajv (dev-only).
import Ajv2020 from 'ajv/dist/2020';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as assert from 'node:assert/strict';

const ajv = new Ajv2020({ allErrors: true, strict: true });
const compiled = new Map<string, ReturnType<typeof ajv.compile>>();

export function validateAgainst(schemaFile: string, data: unknown): void {
  let v = compiled.get(schemaFile);
  if (!v) {
    const schema = JSON.parse(
      fs.readFileSync(path.join(__dirname, '../../../schema', schemaFile), 'utf8'),
    );
    v = ajv.compile(schema);
    compiled.set(schemaFile, v);
  }
  const items = Array.isArray(data) ? data : [data];
  for (const item of items) assert.ok(v(item), `${schemaFile}: ${ajv.errorsText(v.errors)}`);
}
