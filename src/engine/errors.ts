// Errors as data with stable codes. Each edge (CLI line, errno, NBD error, rpc reply) maps the code
// once; nothing in between inspects messages.

export const errorCodes = [
  'INVALID_ARGUMENT', // malformed input from outside
  'NO_VDI', // no VDI of that name
  'NO_TAG', // no snapshot with that tag or id
  'VDI_EXISTS',
  'VDI_WRITE', // the VDI's objects cannot be written: no node stores data
  'SNAPSHOT_EXISTS',
  'VDI_NOT_SNAPSHOT', // clone source must be a snapshot
  'VDI_IS_SNAPSHOT', // a snapshot cannot be written or resized
  'READ_ONLY',
  'OUT_OF_RANGE', // offset or length beyond the end of a VDI
  'TOO_LARGE', // size over the limit
  'NO_SPACE', // VID space full, or disk full
  'NO_OBJECT', // object not found on this node
  'NOT_FORMATTED',
  'ALREADY_FORMATTED',
  'WAIT_FOR_JOIN', // cluster waits for members of the last epoch
  'SHUTDOWN',
  'NETWORK', // a peer did not answer
  'IO', // local disk error
  'CORRUPT', // an object failed its integrity check
  'PROTOCOL', // malformed frame or request
  'BUSY',
  'BEHIND', // this copy missed a write that failed here; it is caught up from another replica
  'REFUSED', // join refused
  'AUTH', // the other end did not prove it holds the cluster key, or we hold none for it
  'UNSUPPORTED',
  'NODE_NOT_FOUND',
  'VDI_LOCKED', // another node's writer holds the VDI (vdi-locks.ts)
  'LOCK_LOST', // a write named a lock the cluster no longer holds (every sheep restarted): re-take it
  'NOT_DURABLE', // a change reached every node but could not be stored on one of them
  'OLD_EPOCH', // a peer request's epoch is older than the receiver's (which the error carries)
  'NEW_EPOCH', // a peer request's epoch is newer than the receiver's, and it did not catch up
  'HALT', // a strict cluster has fewer living nodes than an erasure-coded write needs (format -t)
  'INTERNAL',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

const codeSet: ReadonlySet<string> = new Set(errorCodes);

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && codeSet.has(value);
}

/** The one error class of the project: a stable code and a one-line message. */
export class SdError extends Error {
  readonly code: ErrorCode;
  /** For OLD_EPOCH: the receiver's epoch, which the sender must reach before it retries. */
  readonly epoch: number | undefined;
  constructor(code: ErrorCode, message: string, epoch?: number) {
    super(message);
    this.name = 'SdError';
    this.code = code;
    this.epoch = epoch;
  }
}

export function oldEpochError(senderEpoch: number, receiverEpoch: number): SdError {
  return new SdError('OLD_EPOCH', `request epoch ${senderEpoch} is older than ${receiverEpoch}`, receiverEpoch);
}

export function sdError(code: ErrorCode, message: string): SdError {
  return new SdError(code, message);
}

/** Operating errors become SdError; programming errors (TypeError, RangeError...) are re-thrown. */
export function asSdError(error: unknown): SdError {
  if (error instanceof SdError) return error;
  if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError) {
    throw error;
  }
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOSPC') return new SdError('NO_SPACE', 'no space left on device');
  if (errno === 'ECONNREFUSED' || errno === 'ECONNRESET' || errno === 'EPIPE' || errno === 'ETIMEDOUT') {
    return new SdError('NETWORK', (error as Error).message);
  }
  if (error instanceof Error) return new SdError('IO', error.message);
  return new SdError('INTERNAL', String(error));
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: SdError };
