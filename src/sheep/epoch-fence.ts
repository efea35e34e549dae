// Epoch fencing of sheep-to-sheep requests (the original's check_request_epoch). A request from
// an older epoch is refused with OLD_EPOCH and our epoch, so its sender catches up and re-plans;
// one from a newer epoch waits (bounded) for this node to reach that epoch, else is refused with
// NEW_EPOCH. So no replica write is applied under an epoch older than the receiver's.
import { SdError, oldEpochError } from '../engine/errors.js';
import type { Group } from './group.js';

export interface Fenced {
  readonly epoch: number;
  readonly from: string;
}

export async function admitPeerRequest(
  group: Pick<Group, 'epoch' | 'waitForEpoch'>,
  request: Fenced,
  holdMs: number,
): Promise<void> {
  if (request.epoch < group.epoch) throw oldEpochError(request.epoch, group.epoch);
  if (request.epoch === group.epoch) return;
  await group.waitForEpoch(request.epoch, holdMs);
  if (request.epoch < group.epoch) throw oldEpochError(request.epoch, group.epoch);
  if (request.epoch > group.epoch) {
    throw new SdError(
      'NEW_EPOCH',
      `request from ${request.from} has epoch ${request.epoch}; this node is at ${group.epoch} and did not catch up in ${holdMs} ms`,
    );
  }
}
