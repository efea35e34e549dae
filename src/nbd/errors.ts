// The one place where SdError codes become NBD error values (transmission) and option reply errors
// (handshake). Everything else in src/nbd throws or passes SdError and never picks an errno itself,
// except request validation, whose errno the spec prescribes case by case (see transmission.ts).
import type { ErrorCode, SdError } from '../engine/errors.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_UNKNOWN,
  type NbdErrno,
} from './constants.js';

const errnoByCode: Partial<Record<ErrorCode, NbdErrno>> = {
  INVALID_ARGUMENT: NBD_EINVAL,
  OUT_OF_RANGE: NBD_EINVAL,
  TOO_LARGE: NBD_EINVAL,
  READ_ONLY: NBD_EPERM,
  VDI_IS_SNAPSHOT: NBD_EPERM,
  NO_SPACE: NBD_ENOSPC,
  SHUTDOWN: NBD_ESHUTDOWN,
};

/** Errors that say the cluster, not the client, is in trouble: logged as errors. */
const clusterCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'NETWORK',
  'IO',
  'CORRUPT',
  'NO_OBJECT',
  'WAIT_FOR_JOIN',
  'NOT_FORMATTED',
  'BUSY',
  'BEHIND',
  'INTERNAL',
]);

export function nbdErrnoFor(error: SdError): NbdErrno {
  return errnoByCode[error.code] ?? NBD_EIO;
}

export function isClusterError(error: SdError): boolean {
  return clusterCodes.has(error.code);
}

const optionReplyByCode: Partial<Record<ErrorCode, number>> = {
  SHUTDOWN: NBD_REP_ERR_SHUTDOWN,
  BUSY: NBD_REP_ERR_POLICY, // too many sessions: the server's policy, with the limit in the message
  INVALID_ARGUMENT: NBD_REP_ERR_INVALID,
  VDI_LOCKED: NBD_REP_ERR_POLICY, // another node's writer holds the VDI: the message says who
};

/** Opening an export failed: NO_VDI, NO_TAG and cluster failures all mean "not available". */
export function optionReplyErrorFor(error: SdError): number {
  return optionReplyByCode[error.code] ?? NBD_REP_ERR_UNKNOWN;
}
