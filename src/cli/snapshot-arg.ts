// `-s SNAP` as the original's vdi_parser read it: all digits name a snapshot id (which counts
// from 1), anything else a tag.
import { parseSnapshotRef, type SnapshotRef } from '../engine/vdi.js';
import { DogFailure } from './common.js';
import { snapshotIdZero } from './messages.js';

export function snapshotArg(text: string | undefined): SnapshotRef {
  const ref = parseSnapshotRef(text);
  if (ref !== undefined && 'snapId' in ref && ref.snapId === 0) throw new DogFailure(snapshotIdZero);
  return ref;
}
