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
  it('nodes that join a running cluster at once all end with one epoch history', async () => {
    // Verdicts for all three used to be decided from one state, before any of them was applied:
    // each joiner then counted epochs from there (node 3: [[0],[0,1,2,3]] beside node 0's four).
    const c = new SimTestCluster({ hosts: 4 });
    await c.start(0);
    await c.format(0, 1);
    await c.start(1, 2, 3);
    await c.waitForMembers();
    await c.until('epoch 4 on every node', () => c.live().every((i) => c.history(i).length >= 4));
    const histories = c.live().map((i) => c.history(i));
    for (const [i, history] of histories.entries()) expect(history, `history of node ${i}`).toEqual(histories[0]);
    expect(histories[0]).toHaveLength(4); // one epoch per join
    expect(histories[0]![0]).toEqual([0]);
    expect(histories[0]!.at(-1)).toEqual([0, 1, 2, 3]);
  });

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

  it('nine nodes started at once all join, and epoch 1 has all nine', async () => {
    const c = new SimTestCluster({ hosts: 9 });
    const all = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    await c.start(...all);
    await c.waitForMembers();
    const lists = all.map((i) => c.sheep(i).admin.nodeList().map((node) => node.id));
    for (const list of lists) expect(list).toEqual(all.map((i) => c.nodeId(i)));
    await c.format(4, 3);
    await expectHistory(c, [all]);
  });

  it('seven nodes, copies 3: a node down during an 80 MiB write recovers it; every node reads the same data', async () => {
    const c = new SimTestCluster({ hosts: 7 });
    const all = [0, 1, 2, 3, 4, 5, 6];
    await c.start(...all);
    await c.format(0, 3);
    const data = pattern(80 * MiB, 20);
    await c.create(0, 'big', 80 * MiB);
    c.kill(6);
    await c.waitForMembers();
    await c.write(0, 'big', 0, data);
    await c.start(6);
    await expectFullCopies(c, 3, 21); // 20 data objects and the inode
    expect((await c.objects(6)).length).toBeGreaterThan(0);
    for (const i of all) expect(await c.readMd5(i, 'big', data.length), `via ${i}`).toBe(md5(data));
  }, 300_000); // wall time: many MiB through in-memory streams on a shared machine

  it('sixteen nodes, copies 6: five leave one by one, data is rewritten, they return one by one: never the old data', async () => {
    const c = new SimTestCluster({ hosts: 16 });
    const all = Array.from({ length: 16 }, (_, i) => i);
    await c.start(...all);
    await c.format(0, 6);
    const first = pattern(24 * MiB, 1);
    const second = pattern(24 * MiB, 2);
    await c.create(0, 'v', first.length);
    await c.write(0, 'v', 0, first);
    await expectFullCopies(c, 6, 7);
    const leaving = [11, 3, 15, 7, 1];
    for (const i of leaving) {
      c.kill(i);
      await c.waitForMembers();
      await expectFullCopies(c, 6, 7);
    }
    await c.write(0, 'v', 0, second);
    expect(await c.readMd5(2, 'v', second.length)).toBe(md5(second));
    // One at a time (test/membership.test.ts starts them at once on real processes: five joins
    // racing into a running cluster leave the earlier joiners on their join epoch here).
    for (const i of leaving) {
      await c.start(i);
      await c.waitForMembers();
      // During its recovery: the returning node gives the new data, its stale copies never.
      expect(await c.readMd5(i, 'v', second.length), `via ${i} right after it returned`).toBe(md5(second));
    }
    expect(c.live()).toEqual(all);
    for (const i of all) expect(await c.readMd5(i, 'v', second.length), `via ${i} during recovery`).toBe(md5(second));
    await expectFullCopies(c, 6, 7);
    for (const i of all) expect(await c.readMd5(i, 'v', second.length), `via ${i} after recovery`).toBe(md5(second));
  }, 300_000); // wall time: many MiB through in-memory streams on a shared machine

  it('two nodes, copies 2: both replaced one at a time, the data reads back unchanged', async () => {
    const c = new SimTestCluster({ hosts: 4 });
    await c.start(0, 1);
    await c.format(0, 2);
    const data = pattern(24 * MiB, 3);
    await c.create(0, 'v', data.length);
    await c.write(0, 'v', 0, data);
    await expectFullCopies(c, 2, 7);
    for (const [added, removed] of [[2, 0], [3, 1]] as const) {
      await c.start(added);
      await c.waitForMembers();
      await expectFullCopies(c, 2, 7);
      c.kill(removed);
      await c.waitForMembers();
      await expectFullCopies(c, 2, 7);
    }
    expect(c.live()).toEqual([2, 3]);
    expect(await c.objects(2)).toHaveLength(7);
    expect(await c.objects(3)).toHaveLength(7);
    expect(await c.readMd5(2, 'v', data.length)).toBe(md5(data));
    expect(await c.readMd5(3, 'v', data.length)).toBe(md5(data));
  });

  it('recovery disabled: two of eight nodes die, I/O still works, copies come back only after enable', async () => {
    const c = new SimTestCluster({ hosts: 8 });
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    await c.start(...all);
    await c.format(0, 3);
    const data = pattern(48 * MiB, 4);
    await c.create(0, 'v', data.length);
    await c.write(0, 'v', 0, data);
    await expectFullCopies(c, 3, 13);
    await c.recover(0, 'disable');
    // Each node applies the change when it reads it from the cluster log (a seeded delay).
    await c.until('recovery disabled everywhere', () => c.live().every((i) => !c.sheep(i).group.recoveryEnabled));
    expect(c.status(5)).toBe('running, auto-recovery disabled');
    c.kill(6);
    c.kill(7);
    await c.waitForMembers();
    // Writes and reads work; only the first 8 MiB are rewritten.
    const patch = pattern(8 * MiB, 5);
    await c.write(1, 'v', 0, patch);
    const expected = Buffer.concat([patch, data.subarray(8 * MiB)]);
    expect(await c.readMd5(2, 'v', expected.length)).toBe(md5(expected));
    await c.runFor(60_000); // a simulated minute: nothing is recovered while disabled
    const short = await c.badCopies(3);
    expect(short.length).toBeGreaterThan(0);
    expect(short.every((o) => o.holders.length < 3)).toBe(true);
    expect(c.live().every((i) => c.recoveryState(i).receivedBytes === 0)).toBe(true);
    await c.recover(0, 'enable');
    await expectFullCopies(c, 3, 13);
    expect(c.status(5)).toBe('running, auto-recovery enabled');
    expect(await c.readMd5(3, 'v', expected.length)).toBe(md5(expected));
  });

  it('differential recovery: a node down for one small write receives only that object on return', async () => {
    const c = new SimTestCluster({ hosts: 4 });
    const all = [0, 1, 2, 3];
    await c.start(...all);
    await c.format(0, 3);
    const data = pattern(40 * MiB, 9);
    await c.create(0, 'v', data.length);
    await c.write(0, 'v', 0, data);
    await expectFullCopies(c, 3, 11);
    // A data object node 3 holds: the small write lands in it.
    const held = (await c.objects(3)).filter((oid) => oid.startsWith('00'));
    expect(held.length).toBeGreaterThan(0);
    const index = parseInt(held[0]!.slice(8), 16);
    c.kill(3);
    await c.waitForMembers();
    await expectFullCopies(c, 3, 11);
    const small = pattern(4096, 10);
    await c.write(0, 'v', index * 4 * MiB + 8192, small);
    await c.start(3);
    await expectFullCopies(c, 3, 11);
    const recovered = c.recoveryState(3);
    expect(recovered.epoch).toBe(c.history(3).length);
    expect(recovered.receivedBytes).toBe(4 * MiB); // exactly the one changed object
    expect(recovered.keptObjects).toBe((await c.objects(3)).length - 1); // every other copy checked, kept
    const expected = Buffer.from(data);
    small.copy(expected, index * 4 * MiB + 8192);
    for (const i of all) expect(await c.readMd5(i, 'v', expected.length), `via ${i}`).toBe(md5(expected));
  });

  it('a fourth node added to three takes about a quarter of the objects, and they leave the others', async () => {
    const c = new SimTestCluster({ hosts: 4 });
    await c.start(0, 1, 2);
    await c.format(0, 1, 20); // 1 MiB objects: enough objects for a share to mean something
    const data = pattern(128 * MiB, 11);
    await c.create(0, 'v', data.length);
    await c.write(0, 'v', 0, data);
    const before = await expectFullCopies(c, 1, 129);
    await c.start(3);
    await c.waitForMembers();
    const after = await expectFullCopies(c, 1, 129);
    expect([...after.keys()]).toEqual([...before.keys()]);
    const share = (await c.objects(3)).length / after.size;
    expect(share).toBeGreaterThan(0.12);
    expect(share).toBeLessThan(0.4);
    // Only objects that moved to the new node changed place.
    for (const [oid, [holder]] of after) if (holder !== 3) expect(before.get(oid)).toEqual([holder]);
    expect(await c.readMd5(3, 'v', data.length)).toBe(md5(data));
  });

  it('a write that updates the inode on a node still recovering it does not leave a partial inode there', async () => {
    const c = new SimTestCluster({ hosts: 3 });
    await c.start(0, 1);
    await c.format(0, 3); // two zones: two copies now, three once the third node is in
    const first = pattern(8 * MiB, 12);
    await c.create(0, 'v', 40 * MiB);
    await c.write(0, 'v', 0, first);
    await expectFullCopies(c, 2, 3);
    await c.recover(0, 'disable');
    await c.start(2); // owns every object now, has none, and cannot recover yet
    await c.waitForMembers();
    const later = pattern(4 * MiB, 13);
    await c.write(0, 'v', 20 * MiB, later); // a new object: the inode changes
    await c.recover(0, 'enable');
    await expectFullCopies(c, 3, 4);
    const expected = Buffer.alloc(40 * MiB);
    first.copy(expected, 0);
    later.copy(expected, 20 * MiB);
    for (const i of [2, 1, 0]) expect(await c.readMd5(i, 'v', expected.length), `via ${i}`).toBe(md5(expected));
    const inode = (await c.objects(0)).find((oid) => oid.startsWith('80'))!;
    expect(await c.objectMd5(2, inode)).toBe(await c.objectMd5(0, inode));
  });

  it('the recovery throttle limits objects per interval for the whole node (simulated time)', async () => {
    const c = new SimTestCluster({ hosts: 3 });
    await c.start(0, 1);
    await c.format(0, 3);
    const data = pattern(40 * MiB, 14);
    await c.create(0, 'v', data.length);
    await c.write(0, 'v', 0, data);
    await expectFullCopies(c, 2, 11);
    await c.setThrottle(1, 2, 1000);
    expect(c.sheep(1).group.throttle).toEqual({ maxObjects: 2, intervalMs: 1000 });
    await c.until('the throttle on node 0', () => c.sheep(0).group.throttle.maxObjects === 2);
    expect(c.sheep(0).group.throttle).toEqual({ maxObjects: 2, intervalMs: 1000 });
    const startedMs = c.nowMs();
    await c.start(2); // needs all 11 objects: at 2 per second, at least 5 s
    await expectFullCopies(c, 3, 11);
    expect(c.nowMs() - startedMs).toBeGreaterThan(5000);
    // Every object, and of the inode only the entries a 40 MiB VDI uses (10 × 4 bytes of its 4 MiB).
    expect(c.recoveryState(2).receivedBytes).toBe(10 * 4 * MiB + 10 * 4);
    expect(await c.readMd5(2, 'v', data.length)).toBe(md5(data));
  });

  it('shutdown and restart: waiting until every member of the last epoch is back, then the same history', async () => {
    const c = new SimTestCluster({ hosts: 3 });
    const all = [0, 1, 2];
    await c.start(...all);
    await c.format(0, 3);
    const data = pattern(12 * MiB, 6);
    await c.create(1, 'v', data.length);
    await c.write(1, 'v', 0, data);
    await c.waitSettled();
    const before = c.history(0);
    await c.settle(c.sheep(0).admin.shutdownCluster(), 'shutdown');
    await c.until('every sheep stopped', () => c.live().length === 0);
    await c.start(2);
    expect(c.status(2)).toBe('waiting');
    await expect(c.read(2, 'v', 0, 4096)).rejects.toThrow();
    await c.start(0);
    expect(c.status(0)).toBe('waiting');
    await c.start(1);
    await c.until('running everywhere', () => all.every((i) => c.status(i) === 'running, auto-recovery enabled'));
    for (const i of all) expect(c.history(i), `history of ${i}`).toEqual(before);
    for (const i of all) expect(await c.readMd5(i, 'v', data.length), `via ${i}`).toBe(md5(data));
  });

  it('forced recovery after a partial restart: a new epoch of the present nodes, data readable, copies back', async () => {
    const c = new SimTestCluster({ hosts: 3 });
    const all = [0, 1, 2];
    await c.start(...all);
    await c.format(0, 3);
    const data = pattern(12 * MiB, 7);
    await c.create(0, 'v', data.length);
    await c.write(0, 'v', 0, data);
    await c.waitSettled();
    await c.settle(c.sheep(0).admin.shutdownCluster(), 'shutdown');
    await c.until('every sheep stopped', () => c.live().length === 0);
    await c.start(0, 1);
    expect(c.status(1)).toBe('waiting');
    await c.recover(0, 'force');
    await c.until('running after force', () => [0, 1].every((i) => c.status(i) === 'running, auto-recovery enabled'));
    await expectHistory(c, [all, [0, 1]]);
    for (const i of [0, 1]) expect(await c.readMd5(i, 'v', data.length), `via ${i}`).toBe(md5(data));
    await expectFullCopies(c, 2, 4);
    // The missing node comes back later and gets its copies again.
    await c.start(2);
    await expectHistory(c, [all, [0, 1], all]);
    await expectFullCopies(c, 3, 4);
    expect(await c.readMd5(2, 'v', data.length)).toBe(md5(data));
  });
});
