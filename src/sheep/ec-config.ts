// The erasure coding a format asks for, checked once at the edge: a copy_policy byte that names
// no D:P is refused, and copies must be D+P (the original's nr_copies of an EC VDI).
import { decodePolicy } from '../engine/ec-layout.js';
import { SdError } from '../engine/errors.js';
import { codecParityStripsMax } from '../io/reed-solomon.js';

export interface EcConfig {
  copyPolicy?: number;
  strict?: boolean;
}

/** A strip generation off the wire (a decimal u64). */
export function parseGeneration(text: string): bigint {
  if (!/^\d{1,20}$/.test(text) || BigInt(text) >= 1n << 64n) throw new SdError('INVALID_ARGUMENT', `not a strip generation: ${text.slice(0, 24)}`);
  return BigInt(text);
}

export function ecConfig(request: { copies: number; copyPolicy?: number | undefined; strict: boolean }): EcConfig {
  const policy = decodePolicy(request.copyPolicy);
  if (policy && policy.parity > codecParityStripsMax) {
    throw new SdError('INVALID_ARGUMENT', `${policy.data}:${policy.parity} has more parity strips than the codec makes (${codecParityStripsMax})`);
  }
  if (policy && request.copies !== policy.data + policy.parity) {
    throw new SdError('INVALID_ARGUMENT', `${policy.data}:${policy.parity} takes ${policy.data + policy.parity} copies, not ${request.copies}`);
  }
  return { ...(policy ? { copyPolicy: request.copyPolicy! } : {}), ...(request.strict ? { strict: true } : {}) };
}
