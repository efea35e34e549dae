// Which copy of an object to trust when no holder has a verified one (every holder is itself
// recovering, e.g. after epochs changed faster than recovery finished). Pure: epoch history in,
// order out.
//
// Writes of epoch e go to the owners of e. So a holder's copy can hold the writes of every epoch up
// to the latest one in which it was an owner, and of none after: that epoch ranks first (a copy
// left over from an older placement, or a node that came back, ranks below one that kept
// owning the object). Among owners of the same epoch, the one that had been a member longest
// before it ranks first: a node that joined or came back just then may not have recovered its
// copy before the epoch ended. Then placement order, so every node ranks alike.

export interface EpochMembers {
  epoch: number;
  /** Member ids of this epoch. */
  members: readonly string[];
}

/**
 * `holders` ranked best first, by the epochs before `epoch` (the one being recovered);
 * `ownersAt(e)` lists the owners of the object at epoch e, primary first.
 */
export function rankCopies(
  history: readonly EpochMembers[],
  ownersAt: (epoch: number) => readonly string[],
  holders: readonly string[],
  epoch: number,
): string[] {
  const past = history.filter((record) => record.epoch < epoch).sort((a, b) => a.epoch - b.epoch);
  const key = (holder: string) => {
    let ownedAt = -1;
    let position = Number.MAX_SAFE_INTEGER;
    for (let i = past.length - 1; i >= 0; i--) {
      const owners = ownersAt(past[i]!.epoch);
      const at = owners.indexOf(holder);
      if (at >= 0) {
        ownedAt = i;
        position = at;
        break;
      }
    }
    // The first epoch of the unbroken run of membership that ends at `ownedAt`.
    let since = ownedAt;
    while (since > 0 && past[since - 1]!.members.includes(holder)) since -= 1;
    return { owned: ownedAt < 0 ? 0 : past[ownedAt]!.epoch, since: ownedAt < 0 ? Number.MAX_SAFE_INTEGER : past[since]!.epoch, position };
  };
  const keys = new Map(holders.map((holder) => [holder, key(holder)]));
  return [...holders].sort((a, b) => {
    const ka = keys.get(a)!;
    const kb = keys.get(b)!;
    return kb.owned - ka.owned || ka.since - kb.since || ka.position - kb.position || (a < b ? -1 : a > b ? 1 : 0);
  });
}
