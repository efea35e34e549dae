// Checks a request header and payload against the protocol before any handler sees them. Returns
// an error as data (PROTOCOL for an unknown op or misplaced data, INVALID_ARGUMENT for a bad
// field); never throws.
import { SdError, type Result } from '../engine/errors.js';
import { objectSizeBytesMax } from '../engine/limits.js';
import { isOp, protocol, type AnyRequest, type Op } from './protocol.js';
import { checkField, type Field } from './schema.js';

export interface Decoded {
  request: AnyRequest;
  payload: Buffer | undefined;
}

/** Each op's fields as a list, made once: the per-request loop allocates nothing else. */
const fieldLists = new Map<Op, ReadonlyArray<readonly [string, Field]>>(
  (Object.keys(protocol) as Op[]).map((op) => [op, Object.entries(protocol[op].fields)]),
);

function checkPayload(op: Op, payload: Buffer | undefined): void {
  if (protocol[op].payload !== 'request') {
    if (payload !== undefined && payload.length > 0) throw new SdError('PROTOCOL', `${op} takes no data`);
    return;
  }
  if (!payload || payload.length === 0) throw new SdError('INVALID_ARGUMENT', 'request needs data');
  if (payload.length > objectSizeBytesMax) {
    throw new SdError('INVALID_ARGUMENT', `data over ${objectSizeBytesMax} bytes`);
  }
}

/** Names a bad `op` without calling anything of it: a map's own `toString` may be a number. */
function describeOp(op: unknown): string {
  if (typeof op === 'string') return op.slice(0, 40);
  if (op === undefined) return '(missing)';
  if (op === null) return '(null)';
  return `(${Array.isArray(op) ? 'an array' : typeof op === 'object' ? 'a map' : `a ${typeof op}`})`;
}

export function decodeRequest(header: Readonly<Record<string, unknown>>, payload: Buffer | undefined): Result<Decoded> {
  const op = header['op'];
  if (!isOp(op)) {
    return { ok: false, error: new SdError('PROTOCOL', `unknown operation ${describeOp(op)}`) };
  }
  try {
    const request: Record<string, unknown> = { op };
    for (const [name, field] of fieldLists.get(op)!) request[name] = checkField(name, field, header[name]);
    checkPayload(op, payload);
    // Every field of the op's declaration was checked just above: this is its Request type.
    return { ok: true, value: { request: request as unknown as AnyRequest, payload } };
  } catch (error) {
    if (error instanceof SdError) return { ok: false, error };
    throw error; // a bug in a checker, not bad input
  }
}
