// VDI attributes (`dog vdi setattr/getattr`): small key/value pairs per VDI name, kept in the VDI
// registry so they are replicated, stored and adopted at a restart exactly as the registry is.
// Pure: the checks and the planned change; the registry applies it.
import { SdError } from './errors.js';

/** The original's limits: a key of 256 bytes, a value of 64 KiB. */
export const attrKeyBytesMax = 256;
export const attrValueBytesMax = 64 * 1024;
/** Attributes one VDI name may hold: every one rides in every copy of the registry. */
export const attrsPerVdiMax = 256;

/** A change of one attribute: `value` null deletes it. */
export interface AttrChange {
  name: string;
  key: string;
  /** base64 of the value, or null to delete. */
  value: string | null;
}

export interface AttrRequest {
  name: string;
  key: string;
  value: Buffer | null;
  /** -x: refuse when the key exists already. */
  exclusive: boolean;
}

export function checkAttrKey(key: string): void {
  const bytes = Buffer.byteLength(key);
  if (bytes === 0) throw new SdError('INVALID_ARGUMENT', 'Please specify the attribute key');
  if (bytes > attrKeyBytesMax) throw new SdError('INVALID_ARGUMENT', `attribute key is ${bytes} bytes, the limit is ${attrKeyBytesMax}`);
}

/**
 * The change a setattr makes given the name's current attributes (`has`: the keys it holds),
 * checked in the cluster's critical section so that of racing `-x` requests exactly one wins.
 */
export function planAttr(current: ReadonlyMap<string, string> | undefined, request: AttrRequest): AttrChange {
  checkAttrKey(request.key);
  const exists = current?.has(request.key) ?? false;
  if (request.value === null) {
    if (!exists) throw new SdError('NO_OBJECT', `Attribute '${request.key}' not found`);
    return { name: request.name, key: request.key, value: null };
  }
  if (request.value.length > attrValueBytesMax) {
    throw new SdError('TOO_LARGE', `attribute value is ${request.value.length} bytes, the limit is ${attrValueBytesMax}`);
  }
  if (exists && request.exclusive) throw new SdError('VDI_EXISTS', `The attribute '${request.key}' already exists`);
  if (!exists && (current?.size ?? 0) >= attrsPerVdiMax) {
    throw new SdError('NO_SPACE', `VDI ${request.name} has ${attrsPerVdiMax} attributes, the limit`);
  }
  return { name: request.name, key: request.key, value: request.value.toString('base64') };
}
