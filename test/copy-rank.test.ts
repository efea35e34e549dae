// Which copy recovery trusts when no holder vouches for its own (src/sheep/copy-rank.ts).
import { describe, expect, test } from 'vitest';
import { rankCopies, type EpochMembers } from '../src/sheep/copy-rank.js';

// Seed 136's history: 5 joins at 2, leaves at 3; 1 leaves at 4 and is back at 5; 5 is back at 6.
const history: EpochMembers[] = [
  { epoch: 1, members: ['n1', 'n2', 'n3', 'n4'] },
  { epoch: 2, members: ['n1', 'n2', 'n3', 'n4', 'n5'] },
  { epoch: 3, members: ['n1', 'n2', 'n3', 'n4'] },
  { epoch: 4, members: ['n2', 'n3', 'n4'] },
  { epoch: 5, members: ['n1', 'n2', 'n3', 'n4'] },
  { epoch: 6, members: ['n1', 'n2', 'n3', 'n4', 'n5'] },
];
const owners: Record<number, string[]> = {
  1: ['n1', 'n3', 'n2'],
  2: ['n5', 'n1', 'n3'],
  3: ['n1', 'n3', 'n2'],
  4: ['n3', 'n2', 'n4'],
  5: ['n1', 'n3', 'n2'],
  6: ['n5', 'n1', 'n3'],
};
const ownersAt = (epoch: number) => owners[epoch] ?? [];

describe('rankCopies', () => {
  test('an owner of every epoch ranks above one that came back, and a returner from long ago ranks last', () => {
    expect(rankCopies(history, ownersAt, ['n5', 'n1', 'n3'], 6)).toEqual(['n3', 'n1', 'n5']);
  });

  test('a copy left over from an older placement ranks below the latest owners', () => {
    expect(rankCopies(history, ownersAt, ['n4', 'n2'], 6)).toEqual(['n2', 'n4']);
  });

  test('only epochs before the one being recovered count', () => {
    // Recovering epoch 4: n1 owned it at 3 and had been a member since 1, as had n3.
    expect(rankCopies(history, ownersAt, ['n3', 'n1', 'n5'], 4)).toEqual(['n1', 'n3', 'n5']);
  });

  test('every holder ranks alike on every node: ties fall to placement order, then id', () => {
    const flat: EpochMembers[] = [{ epoch: 1, members: ['a', 'b', 'c'] }];
    expect(rankCopies(flat, () => ['b', 'a'], ['a', 'b', 'z'], 2)).toEqual(['b', 'a', 'z']);
    expect(rankCopies(flat, () => [], ['c', 'b'], 2)).toEqual(['b', 'c']);
  });
});
