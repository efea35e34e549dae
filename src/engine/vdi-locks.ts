// Who holds a VDI open for writing (`dog vdi lock list`): an NBD export or a sheepfs mount, through
// one sheep. Pure: the lock table's rule. Writers through one node share a VDI (NBD multi-conn,
// a sheepfs reopen after a snapshot); writers through two nodes must both open it shared.
import { SdError } from './errors.js';
import { nodeIdBytesMax } from './limits.js';

export interface VdiLock {
  /** The working VDI's name: a snapshot or rollback gives it a new VID, the lock stays. */
  name: string;
  /** Names this lock for its release: unique in the cluster. */
  holder: string;
  /** The sheep the writer reaches the VDI through. */
  node: string;
  /** Who writes: an NBD client's address, or a sheepfs mount. */
  client: string;
  sinceSec: number;
  shared: boolean;
}

/** Locks of the whole cluster: bounded, since every member keeps the table. */
export const locksMax = 4096;
export const lockClientBytesMax = 256;
/** `NODE/MS/N`: a node id, a time and a count. */
export const lockHolderBytesMax = nodeIdBytesMax + 64;

/** Refuses `wanted` when another node's writer holds the VDI and the two are not both shared. */
export function checkLock(locks: readonly VdiLock[], wanted: VdiLock): void {
  const other = locks.find((l) => l.name === wanted.name && l.node !== wanted.node && !(l.shared && wanted.shared));
  if (other) {
    throw new SdError(
      'VDI_LOCKED',
      `VDI ${wanted.name} is locked by ${other.client} through ${other.node}${other.shared ? ' (shared)' : ''}: open it shared from every node, or free it with 'dog vdi lock unlock ${wanted.name}'`,
    );
  }
  if (locks.length >= locksMax) throw new SdError('NO_SPACE', `the cluster holds ${locksMax} VDI locks, the limit`);
}
