// Types for the generated standalone validator (scripts/gen-config-validator.mjs).
export interface SchemaError {
  readonly instancePath: string;
  readonly keyword: string;
  readonly params: Record<string, unknown>;
  readonly message?: string;
}
declare function validate(data: unknown): boolean;
declare namespace validate {
  let errors: SchemaError[] | null;
}
export = validate;
