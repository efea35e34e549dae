// Checks every field of a request from outside before it is used: type, range, length.
import { SdError } from '../engine/errors.js';
import { parseOid, type Oid } from '../engine/oid.js';

type Header = Record<string, unknown>;

function invalid(field: string, why: string): SdError {
  return new SdError('INVALID_ARGUMENT', `request field '${field}' ${why}`);
}

export function argString(header: Header, field: string, maxBytes: number): string {
  const value = header[field];
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  if (Buffer.byteLength(value) > maxBytes) throw invalid(field, `is longer than ${maxBytes} bytes`);
  return value;
}

export function argOptionalString(header: Header, field: string, maxBytes: number): string | undefined {
  return header[field] === undefined || header[field] === null ? undefined : argString(header, field, maxBytes);
}

export function argInt(header: Header, field: string, min: number, max: number): number {
  let value = header[field];
  if (typeof value === 'bigint') value = Number(value);
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalid(field, 'must be an integer');
  if (value < min || value > max) throw invalid(field, `must be between ${min} and ${max}`);
  return value;
}

/** A byte size: an integer, exact in a double, up to 2^54 (past 2^53 only even values exist). */
export function argSize(header: Header, field: string, max: number): number {
  let value = header[field];
  if (typeof value === 'bigint') value = Number(value);
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalid(field, 'must be an integer');
  if (value < 0 || value > max) throw invalid(field, `must be between 0 and ${max}`);
  return value;
}

export function argOptionalInt(header: Header, field: string, min: number, max: number): number | undefined {
  return header[field] === undefined || header[field] === null ? undefined : argInt(header, field, min, max);
}

export function argBool(header: Header, field: string): boolean {
  const value = header[field];
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalid(field, 'must be a boolean');
  return value;
}

export function argOid(header: Header, field = 'oid'): Oid {
  const oid = parseOid(header[field]);
  if (oid === undefined) throw invalid(field, 'is not an object id');
  return oid;
}

export function argPayload(payload: Buffer | undefined, maxBytes: number): Buffer {
  if (!payload || payload.length === 0) throw new SdError('INVALID_ARGUMENT', 'request needs data');
  if (payload.length > maxBytes) throw new SdError('INVALID_ARGUMENT', `data over ${maxBytes} bytes`);
  return payload;
}
