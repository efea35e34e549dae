// The one place where an SdError becomes an errno for the kernel. Every FUSE op funnels its
// failures through `fuseErrnoOf`, so `echo nosuch > vdi/mount` and `dd` show the same messages
// for the same causes, whichever op hit them.
import { SdError, type ErrorCode } from '../engine/errors.js';

/** Linux errno values (positive), named as in <errno.h>. */
export const errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ENOTEMPTY: 39,
} as const;

export type ErrnoName = keyof typeof errno;

/** Codes a user can cause and fix; anything not listed is a cluster failure and becomes EIO. */
const errnoByCode: Partial<Record<ErrorCode, ErrnoName>> = {
  NO_VDI: 'ENOENT',
  NO_TAG: 'ENOENT',
  NODE_NOT_FOUND: 'ENOENT',
  INVALID_ARGUMENT: 'EINVAL',
  READ_ONLY: 'EROFS',
  VDI_IS_SNAPSHOT: 'EROFS',
  OUT_OF_RANGE: 'EFBIG',
  TOO_LARGE: 'EFBIG',
  NO_SPACE: 'ENOSPC',
  VDI_EXISTS: 'EEXIST',
  SNAPSHOT_EXISTS: 'EEXIST',
  BUSY: 'EBUSY',
  VDI_LOCKED: 'EBUSY', // another node's writer holds it (engine/vdi-locks.ts)
};

export interface ErrnoVerdict {
  /** Negative, as fuse-native callbacks expect. */
  fuseErrno: number;
  name: ErrnoName;
  /** True when the cause is not the caller's doing and an operator should see it in the log. */
  shouldLog: boolean;
}

/** A refusal by sheepfs itself (EPERM on truncate, EACCES on create...), not by the cluster. */
export class FsRefusal extends Error {
  readonly errnoName: ErrnoName;
  constructor(errnoName: ErrnoName, message: string) {
    super(message);
    this.name = 'FsRefusal';
    this.errnoName = errnoName;
  }
}

export function refuse(errnoName: ErrnoName, message: string): FsRefusal {
  return new FsRefusal(errnoName, message);
}

/**
 * Maps any thrown value. Programming errors (TypeError...) also become EIO here instead of being
 * re-thrown: a FUSE server that crashes leaves a dead mount ("Transport endpoint is not
 * connected") behind, which is worse for the user than one failed call plus a loud log line.
 */
export function fuseErrnoOf(error: unknown): ErrnoVerdict {
  if (error instanceof FsRefusal) {
    return { fuseErrno: -errno[error.errnoName], name: error.errnoName, shouldLog: false };
  }
  const name = error instanceof SdError ? errnoByCode[error.code] : undefined;
  if (name !== undefined) return { fuseErrno: -errno[name], name, shouldLog: false };
  return { fuseErrno: -errno.EIO, name: 'EIO', shouldLog: true };
}
