// Membership changes, recovery and rebalancing on real sheep daemons (needs `npx tsc` first: the
// daemons run from dist/). Ports 7400-7499, a distinct range per test; every daemon is SIGKILLed
// in afterEach. Copies are checked by counting object files per store directory.
// Scenarios that test logic only (epoch histories through kills and restarts, a node down during
// a write, nodes replaced one at a time, differential recovery, rebalancing onto a fourth node, an
// inode written while it is recovered) run exactly and in-process in test/membership-sim.test.ts;
// what stays here needs real processes or checks what `dog` prints.
import { recoverForcePrompt } from '../src/cli/messages.js';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, md5, parseEpochHistory, pattern, poll, sleep } from './support/cluster.js';

const MiB = 1024 * 1024;
let clusters: Cluster[] = [];

function cluster(basePort: number): Cluster {
  const c = new Cluster({ basePort, prefix: 'sheep-membership-' });
  clusters.push(c);
  return c;
}

afterEach(async () => {
  const done = clusters;
  clusters = [];
  await Promise.all(done.map((c) => c.destroy()));
});

async function format(c: Cluster, copies: number, more: string[] = []) {
  const result = await c.dogOk(['cluster', 'format', '-c', String(copies), ...more], { port: c.port(c.live()[0]!) });
  expect(result.out).toBe('using backend plain store\n');
}

async function createAndWrite(c: Cluster, via: number, name: string, data: Buffer, copies?: number) {
  await c.dogOk(['vdi', 'create', name, String(data.length), ...(copies ? ['-c', String(copies)] : [])], { port: c.port(via) });
  await c.dogOk(['vdi', 'write', name], { port: c.port(via), input: data });
}

/** Every live node's history is identical (dates masked) and equals `expected` (indexes per epoch). */
async function expectHistory(c: Cluster, expected: number[][]) {
  const want = expected.map((nodes, k) => ({ epoch: k + 1, nodes: nodes.map((i) => c.nodeId(i)) }));
  // Each node applies the change on its own: wait until all have the last epoch.
  await poll(`epoch ${expected.length} on every node`, async () => {
    const infos = await Promise.all(c.live().map((i) => c.ask(i, (client) => client.clusterInfo())));
    return infos.every((info) => info?.epochs.length === expected.length);
  }, 20_000);
  const texts = await Promise.all(c.live().map((i) => c.clusterInfo(i)));
  for (const text of texts) expect(text).toBe(texts[0]);
  expect(parseEpochHistory(texts[0]!)).toEqual(want);
}

describe('membership', () => {
  it('nine nodes started at once all join, and epoch 1 has all nine', async () => {
    const c = cluster(7410);
    const all = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    await Promise.all(all.map((i) => c.start(i)));
    await c.waitForMembers();
    const lists = await Promise.all(all.map(async (i) => (await c.dogOk(['node', 'list'], { port: c.port(i) })).out));
    for (const list of lists) expect(list).toBe(lists[0]);
    expect(await c.nodeIds(4)).toEqual(all.map((i) => c.nodeId(i)));
    await format(c, 3);
    await expectHistory(c, [all]);
  });

  it('sixteen nodes, copies 6: five leave one by one, data is rewritten, they return: never the old data', async () => {
    const c = cluster(7430);
    const all = Array.from({ length: 16 }, (_, i) => i);
    await c.startAll(all, 'at once');
    await format(c, 6);
    const first = pattern(24 * MiB, 1);
    const second = pattern(24 * MiB, 2);
    await createAndWrite(c, 0, 'v', first);
    await c.waitForFullCopies(all, 6, 60_000, 7);
    const leaving = [11, 3, 15, 7, 1];
    for (const i of leaving) {
      await c.kill(i);
      await c.waitForMembers();
      await c.waitForFullCopies(c.live(), 6, 60_000, 7);
    }
    await c.dogOk(['vdi', 'write', 'v'], { port: c.port(0), input: second });
    expect(await c.readMd5(2, 'v')).toBe(md5(second));
    await Promise.all(leaving.map((i) => c.start(i)));
    // During recovery: every port gives the new data, the returning nodes' stale copies never.
    const during = await Promise.all(all.map((i) => c.readMd5(i, 'v')));
    expect(during).toEqual(all.map(() => md5(second)));
    await c.waitForFullCopies(all, 6, 120_000, 7);
    const after = await Promise.all(all.map((i) => c.readMd5(i, 'v')));
    expect(after).toEqual(all.map(() => md5(second)));
  }, 300_000);

  it('recovery disabled: two of eight nodes die, I/O still works, copies come back only after enable', async () => {
    const c = cluster(7460);
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    await c.startAll(all, 'at once');
    await format(c, 3);
    const data = pattern(48 * MiB, 4);
    await createAndWrite(c, 0, 'v', data);
    await c.waitForFullCopies(all, 3, 60_000, 13);
    expect((await c.dogOk(['cluster', 'recover', 'disable'], { port: c.port(0) })).out).toBe('Cluster recovery: disable\n');
    expect(await c.status(5)).toBe('running, auto-recovery disabled');
    await c.kill(6);
    await c.kill(7);
    await c.waitForMembers();
    const live = c.live();
    // Writes and reads work; only the first 8 MiB are rewritten.
    const patch = pattern(8 * MiB, 5);
    await c.dogOk(['vdi', 'write', 'v', '0'], { port: c.port(1), input: patch });
    const expected = Buffer.concat([patch, data.subarray(8 * MiB)]);
    expect(await c.readMd5(2, 'v')).toBe(md5(expected));
    await sleep(1500);
    const short = c.badCopies(live, 3);
    expect(short.length).toBeGreaterThan(0); // nothing was recovered while disabled
    expect(short.every((o) => o.holders.length < 3)).toBe(true);
    expect((await c.dogOk(['cluster', 'recover', 'enable'], { port: c.port(0) })).out).toBe('Cluster recovery: enable\n');
    await c.waitForFullCopies(live, 3, 60_000, 13);
    expect(await c.status(5)).toBe('running, auto-recovery enabled');
    expect(await c.readMd5(3, 'v')).toBe(md5(expected));
  }, 240_000);

  it('a node formatted in another cluster is refused and the node list does not change', async () => {
    const c = cluster(7470);
    await c.startAll([0, 1, 2], 'at once');
    await format(c, 2);
    // Node 3 gets a store of its own cluster first.
    const otherDir = path.join(c.root, 'other-cluster');
    await c.start(3, [], otherDir);
    await c.dogOk(['cluster', 'format', '-c', '1'], { port: c.port(3) });
    await c.kill(3);
    const before = await c.nodeIds(0);
    const refused = await c.startExpectExit(3);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/^sheep: .*another cluster.*\n$/);
    expect(refused.log).toContain('another cluster');
    expect(await c.nodeIds(0)).toEqual(before);
    expect(await c.nodeIds(2)).toEqual([0, 1, 2].map((i) => c.nodeId(i)));
    await expectHistory(c, [[0, 1, 2]]);
  });

  it('shutdown and restart: waiting until every member of the last epoch is back, then the same epoch', async () => {
    const c = cluster(7475);
    const all = [0, 1, 2];
    await c.startAll(all, 'at once');
    await format(c, 3);
    const data = pattern(12 * MiB, 6);
    await createAndWrite(c, 1, 'v', data);
    const before = await c.clusterInfo(0);
    await c.dogOk(['cluster', 'shutdown'], { port: c.port(0) });
    const exits = await Promise.all(all.map((i) => c.exited(i)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0]);
    await c.start(2);
    expect(await c.status(2)).toBe('Waiting for other nodes to join cluster');
    expect((await c.dogOk(['vdi', 'read', 'v', '0', '4096'], { port: c.port(2) }).catch((e: Error) => e)) instanceof Error).toBe(true);
    await c.start(0);
    expect(await c.status(0)).toBe('Waiting for other nodes to join cluster');
    await c.start(1);
    await poll('running everywhere', async () => {
      for (const i of all) if ((await c.status(i)) !== 'running, auto-recovery enabled') return false;
      return true;
    }, 20_000);
    for (const i of all) expect(await c.clusterInfo(i)).toBe(before);
    for (const i of all) expect(await c.readMd5(i, 'v')).toBe(md5(data));
  });

  it('forced recovery after a partial restart: a new epoch of the present nodes, data readable', async () => {
    const c = cluster(7478);
    const all = [0, 1, 2];
    await c.startAll(all, 'at once');
    await format(c, 3);
    const data = pattern(12 * MiB, 7);
    await createAndWrite(c, 0, 'v', data);
    await c.dogOk(['cluster', 'shutdown'], { port: c.port(0) });
    await Promise.all(all.map((i) => c.exited(i)));
    await c.start(0);
    await c.start(1);
    expect(await c.status(1)).toBe('Waiting for other nodes to join cluster');
    // The command asks on stdin, the original's words; anything but yes ends it, silently and
    // successfully, as the original's confirm() did.
    const no = await c.dog(['cluster', 'recover', 'force'], { port: c.port(0), input: Buffer.from('no\n') });
    expect({ code: no.code, out: no.out, stderr: no.stderr }).toEqual({ code: 0, out: recoverForcePrompt, stderr: '' });
    expect(await c.status(0)).toBe('Waiting for other nodes to join cluster');
    const yes = await c.dogOk(['cluster', 'recover', 'force'], { port: c.port(0), input: Buffer.from('yes\n') });
    expect(yes.out).toContain('[yes/no]');
    await poll('running after force', async () => (await c.status(1)) === 'running, auto-recovery enabled', 20_000);
    await expectHistory(c, [all, [0, 1]]);
    for (const i of [0, 1]) expect(await c.readMd5(i, 'v')).toBe(md5(data));
    await c.waitForFullCopies([0, 1], 2, 30_000, 4);
    // The missing node comes back later and gets its copies again.
    await c.start(2);
    await expectHistory(c, [all, [0, 1], all]);
    await c.waitForFullCopies(all, 3, 30_000, 4);
    expect(await c.readMd5(2, 'v')).toBe(md5(data));
  });

  it('a gateway node holds 0 vnodes and stores nothing; -g with -V is refused', async () => {
    const c = cluster(7481);
    await c.startAll([0, 1, 2], 'at once');
    await c.start(3, ['-g']);
    await c.waitForMembers();
    await format(c, 2);
    const list = (await c.dogOk(['node', 'list', '-r'], { port: c.port(0) })).out.split('\n').filter(Boolean);
    expect(list.map((line) => line.split(' ')[2])).toEqual(['128', '128', '128', '0']);
    const data = pattern(20 * MiB, 8);
    await createAndWrite(c, 3, 'v', data);
    expect(await c.readMd5(3, 'v')).toBe(md5(data));
    await c.waitForFullCopies([0, 1, 2, 3], 2, 30_000, 6);
    expect(c.objectFiles(3)).toEqual([]);
    const refused = await c.startExpectExit(4, ['-g', '-V', '10']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toBe("sheep: Options '-g' and '-V' can not be both specified\n");
    expect(await c.nodeIds(0)).toEqual([0, 1, 2, 3].map((i) => c.nodeId(i)));
  });

  it('dog node kill ID stops that node and it leaves the node list', async () => {
    const c = cluster(7490);
    await c.startAll([0, 1, 2], 'at once');
    await format(c, 2);
    await c.dogOk(['node', 'kill', '1'], { port: c.port(0) });
    const exit = await Promise.race([c.exited(1), sleep(10_000).then(() => 'timeout' as const)]);
    expect(exit).toEqual({ code: 0, signal: null });
    await c.waitForMembers();
    expect(await c.nodeIds(0)).toEqual([c.nodeId(0), c.nodeId(2)]);
    await expectHistory(c, [[0, 1, 2], [0, 2]]);
    const bad = await c.dog(['node', 'kill', '5']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Invalid node id');
  });

  it('the recovery throttle limits objects per interval for the whole node', async () => {
    const c = cluster(7427);
    await c.startAll([0, 1], 'at once');
    await format(c, 3);
    await createAndWrite(c, 0, 'v', pattern(40 * MiB, 14));
    await c.waitForFullCopies([0, 1], 2, 30_000, 11);
    // The original's words: set-throttle says nothing, get-throttle "max (N), interval (MS)".
    expect((await c.dogOk(['node', 'recovery', 'get-throttle'], { port: c.port(0) })).out).toBe('max (0), interval (0)\n');
    expect((await c.dogOk(['node', 'recovery', 'set-throttle', '2', '1000'], { port: c.port(1) })).out).toBe('');
    expect((await c.dogOk(['node', 'recovery', 'get-throttle'], { port: c.port(0) })).out).toBe('max (2), interval (1000)\n');
    const started = Date.now();
    await c.start(2); // needs all 11 objects: at 2 per second, at least 5 s
    await c.waitForFullCopies([0, 1, 2], 3, 60_000, 11);
    expect(Date.now() - started).toBeGreaterThan(4500);
    expect(await c.readMd5(2, 'v')).toBe(md5(pattern(40 * MiB, 14)));
  });
});
