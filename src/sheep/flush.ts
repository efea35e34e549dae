// A flush of one VDI across the cluster (docs/durability.md): every member that stores data syncs
// its cached writes to the VDI's objects (`peer.flush`), all members at once, each object once.
// Writes acknowledged before the flush began reached every replica's OS cache, so once every
// member answers they are on every replica's disk. A member that cannot be reached is waited out
// as a write waits for a lost replica: the next epoch no longer counts it (its copies are
// replaced by recovery, which writes durably), and the flush is asked again of the members then.
import { SdError, asSdError } from '../engine/errors.js';
import { epochCatchUpMs } from '../engine/limits.js';
import type { Vid } from '../engine/oid.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';

/** Rounds of a flush, each after an epoch change, before it fails. */
const flushAttemptsMax = 5;

export async function flushEverywhere(
  group: Group,
  peers: Peers,
  vid: Vid,
  localFlush: (vid: Vid) => Promise<number>,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const epoch = group.epoch;
    const members = group.members.filter((node) => node.vnodes > 0);
    const results = await Promise.allSettled(
      members.map((node) => (node.id === group.self.id ? localFlush(vid) : peers.call(node, 'peer.flush', { vid }))),
    );
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failure) return results.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value : 0), 0);
    const error = asSdError(failure.reason);
    const code = error.code;
    if ((code !== 'NETWORK' && code !== 'OLD_EPOCH' && code !== 'NEW_EPOCH') || attempt >= flushAttemptsMax) {
      throw code === 'NETWORK' || code === 'IO' || code === 'NO_SPACE' ? error : new SdError('IO', `flush failed: ${error.message}`);
    }
    if (code === 'NETWORK') await group.waitForEpoch(epoch + 1, epochCatchUpMs);
  }
}
