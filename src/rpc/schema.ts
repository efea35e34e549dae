// Request fields as data: each field's kind and bounds, the TypeScript type derived from it, and
// one checker. Hand-written rather than zod: six kinds of field cover every request, the checker
// is a loop over a precomputed field list on the path of every 4 MiB object request (no parse
// tree, no issue objects), and the project keeps its dependencies few.
import { SdError } from '../engine/errors.js';
import { parseOid, type Oid } from '../engine/oid.js';

export interface StringField<Optional extends boolean = boolean> {
  readonly kind: 'string';
  readonly maxBytes: number;
  readonly optional: Optional;
}
export interface IntField<Optional extends boolean = boolean> {
  readonly kind: 'int';
  readonly min: number;
  readonly max: number;
  readonly optional: Optional;
}
/** A byte size: an integer exact in a double, up to `max` (past 2^53 only even values exist). */
export interface SizeField {
  readonly kind: 'size';
  readonly max: number;
}
/** Absent means false. */
export interface BoolField {
  readonly kind: 'bool';
}
export interface OidField {
  readonly kind: 'oid';
}
export interface OneOfField<V extends string = string> {
  readonly kind: 'oneOf';
  readonly values: readonly V[];
}

/** Bytes in the header (msgpack bin), optional: small binary beside a request's payload. */
export interface BytesField {
  readonly kind: 'bytes';
  readonly maxBytes: number;
  readonly optional: true;
}

export type Field = StringField | IntField | SizeField | BoolField | OidField | OneOfField | BytesField;
export type Fields = Readonly<Record<string, Field>>;

export const string = (maxBytes: number): StringField<false> => ({ kind: 'string', maxBytes, optional: false });
export const optionalString = (maxBytes: number): StringField<true> => ({ kind: 'string', maxBytes, optional: true });
export const int = (min: number, max: number): IntField<false> => ({ kind: 'int', min, max, optional: false });
export const optionalInt = (min: number, max: number): IntField<true> => ({ kind: 'int', min, max, optional: true });
export const size = (max: number): SizeField => ({ kind: 'size', max });
export const bool: BoolField = { kind: 'bool' };
export const oid: OidField = { kind: 'oid' };
export const optionalBytes = (maxBytes: number): BytesField => ({ kind: 'bytes', maxBytes, optional: true });
export const oneOf = <const V extends string>(values: readonly V[]): OneOfField<V> => ({ kind: 'oneOf', values });

type ValueOf<F> =
  F extends StringField<infer O> ? (O extends true ? string | undefined : string)
  : F extends IntField<infer O> ? (O extends true ? number | undefined : number)
  : F extends SizeField ? number
  : F extends BoolField ? boolean
  : F extends OidField ? Oid
  : F extends OneOfField<infer V> ? V
  : F extends BytesField ? Buffer | undefined
  : never;

/** Fields a sender may leave out. */
type Loose<F> = F extends BoolField ? true : F extends { readonly optional: true } ? true : false;

export type Sent<S extends Fields> = {
  [P in keyof S as Loose<S[P]> extends true ? never : P]: ValueOf<S[P]>;
} & {
  [P in keyof S as Loose<S[P]> extends true ? P : never]?: ValueOf<S[P]> | undefined;
};

export type Received<S extends Fields> = { readonly [P in keyof S]: ValueOf<S[P]> };

function invalid(name: string, why: string): SdError {
  return new SdError('INVALID_ARGUMENT', `request field '${name}' ${why}`);
}

function integer(name: string, raw: unknown, exact: (n: number) => boolean): number {
  const value = typeof raw === 'bigint' ? Number(raw) : raw;
  if (typeof value !== 'number' || !exact(value)) throw invalid(name, 'must be an integer');
  return value;
}

/** The checked value of one field; throws SdError INVALID_ARGUMENT. */
export function checkField(name: string, field: Field, raw: unknown): unknown {
  switch (field.kind) {
    case 'string': {
      if (field.optional && (raw === undefined || raw === null)) return undefined;
      if (typeof raw !== 'string') throw invalid(name, 'must be a string');
      if (Buffer.byteLength(raw) > field.maxBytes) throw invalid(name, `is longer than ${field.maxBytes} bytes`);
      return raw;
    }
    case 'int': {
      if (field.optional && (raw === undefined || raw === null)) return undefined;
      const value = integer(name, raw, Number.isSafeInteger);
      if (value < field.min || value > field.max) throw invalid(name, `must be between ${field.min} and ${field.max}`);
      return value;
    }
    case 'size': {
      const value = integer(name, raw, Number.isInteger);
      if (value < 0 || value > field.max) throw invalid(name, `must be between 0 and ${field.max}`);
      return value;
    }
    case 'bool':
      if (raw === undefined) return false;
      if (typeof raw !== 'boolean') throw invalid(name, 'must be a boolean');
      return raw;
    case 'oid': {
      const value = parseOid(raw);
      if (value === undefined) throw invalid(name, 'is not an object id');
      return value;
    }
    case 'bytes': {
      if (raw === undefined || raw === null) return undefined;
      if (!(raw instanceof Uint8Array)) throw invalid(name, 'must be bytes');
      if (raw.length > field.maxBytes) throw invalid(name, `is longer than ${field.maxBytes} bytes`);
      return Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.length);
    }
    case 'oneOf':
      if (typeof raw !== 'string' || !field.values.includes(raw)) {
        throw invalid(name, `must be one of ${field.values.join(', ')}`);
      }
      return raw;
  }
}
