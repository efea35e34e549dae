// Membership and recovery scenarios on the simulator's harness (test/support/sim-cluster.ts): real
// Sheep in one process on simulated time, network, memory disks and cluster driver. What they
// assert is exact (epoch histories, copies per store, bytes received by recovery, md5 of the data
// through every node) and the same seed replays them. What only real processes show (SIGKILL of
// an OS process, dog's output, shutdown and restart of processes, refused stores) stays in
// test/membership.test.ts and test/foundation.test.ts.
import { describe, expect, it } from 'vitest';
import { md5, pattern, SimTestCluster } from './support/sim-cluster.js';

const MiB = 1024 * 1024;

/** Every live node has `expected` (host indexes per epoch) as its epoch history. */
async function expectHistory(c: SimTestCluster, expected: number[][]): Promise<void> {
  await c.until(`epoch ${expected.length} on every node`, () => c.live().every((i) => c.history(i).length >= expected.length));
  for (const i of c.live()) expect(c.history(i), `history of node ${i}`).toEqual(expected);
}

/** After the cluster settled: every object has exactly `copies` holders among the live nodes, `count` objects. */
async function expectFullCopies(c: SimTestCluster, copies: number, count: number): Promise<Map<string, number[]>> {
  await c.waitSettled();
  expect(await c.badCopies(copies)).toEqual([]);
  const holders = await c.holders();
  expect(holders.size).toBe(count);
  return holders;
}

describe('membership on the simulator', () => {
  it('epoch history is the same on every node through kills and restarts in several orders', async () => {
    const c = new SimTestCluster({ hosts: 4 });
    await c.start(0, 1, 2, 3);
    await c.format(0, 2);
    const history = [[0, 1, 2, 3]];
    await expectHistory(c, history);
    const step = async (action: 'kill' | 'start', i: number) => {
      if (action === 'kill') c.kill(i);
      else await c.start(i);
      await c.waitForMembers();
      history.push(c.live());
      await expectHistory(c, history);
    };
    await step('kill', 3); // the newest member
    await step('kill', 1); // one in the middle
    await step('start', 3); // back in another order than they left
    await step('start', 1);
    await step('kill', 0); // the oldest member (the master)
    await step('kill', 2);
    await step('start', 0);
    await step('start', 2);
    expect(history).toEqual([
      [0, 1, 2, 3],
      [0, 1, 2],
      [0, 2],
      [0, 2, 3],
      [0, 1, 2, 3],
      [1, 2, 3],
      [1, 3],
      [0, 1, 3],
      [0, 1, 2, 3],
    ]);
  });
});
