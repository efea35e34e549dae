// A hung sheep (issue #12 item 5), on real processes: one of four sheep is SIGSTOPped. It must
// be removed within the local driver's failure timeout, writes that touch it must go on on the
// others within a few seconds, the dog commands that ask every member must answer; woken
// (SIGCONT), it finds itself out, rejoins as a returning node and recovers what it missed.
// Ports 8020-8029.
import { afterEach, describe, expect, it } from 'vitest';
import { localLeaveDetectMsMax } from '../src/engine/limits.js';
import { Cluster, md5, parseEpochHistory, pattern, poll } from './support/cluster.js';

const MiB = 1024 * 1024;
/** What "within the failure timeout plus a few seconds" means for a command here. */
const answerWithinMs = localLeaveDetectMsMax + 6000;
let c: Cluster | undefined;

afterEach(async () => {
  if (c?.running(3)) await c.kill(3, 'SIGCONT', false);
  await c?.destroy();
  c = undefined;
});

describe('a hung sheep', () => {
  it('is removed within the failure timeout, writes go on, and woken it rejoins and catches up', async () => {
    const cluster = (c = new Cluster({ basePort: 8020, prefix: 'sheep-hung-' }));
    await cluster.startAll([0, 1, 2, 3]);
    await cluster.dogOk(['cluster', 'format', '-c', '3']);
    const before = pattern(16 * MiB, 1);
    const after = pattern(16 * MiB, 2);
    await cluster.dogOk(['vdi', 'create', 'v', String(before.length)]);
    await cluster.dogOk(['vdi', 'write', 'v'], { input: before });

    const stoppedAtMs = Date.now();
    await cluster.kill(3, 'SIGSTOP', false);
    // Every object of v has a copy on node 3 or a primary there (4 nodes, 3 copies): all stall.
    const write = cluster.dog(['vdi', 'write', 'v'], { input: after, timeoutMs: 30_000 });
    write.catch(() => undefined); // awaited below; a failure before that must not go unhandled
    const removedAtMs = await poll('node 3 to be removed', async () => {
      const ids = await cluster.ask(0, (client) => client.nodeList());
      return ids !== undefined && !ids.some((node) => node.id === cluster.nodeId(3)) ? Date.now() : undefined;
    }, 30_000, 50);
    const written = await write;
    const writeMs = Date.now() - stoppedAtMs;
    console.log(`SIGSTOP: node 3 removed after ${removedAtMs - stoppedAtMs} ms; a 16 MiB write through it finished after ${writeMs} ms`);
    expect(removedAtMs - stoppedAtMs).toBeLessThan(localLeaveDetectMsMax + 500); // + our poll
    expect({ code: written.code, stderr: written.stderr }).toEqual({ code: 0, stderr: '' });
    expect(writeMs).toBeLessThan(answerWithinMs);
    // Whoever saw it first said why.
    expect([0, 1, 2].some((i) => cluster.log(i).includes('local driver: member stopped beating, reporting it left'))).toBe(true);

    // The commands that ask every member answer, and name only the members.
    for (const args of [['node', 'info'], ['node', 'recovery'], ['vdi', 'list']]) {
      const startedMs = Date.now();
      const result = await cluster.dog(args, { timeoutMs: 30_000 });
      expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(Date.now() - startedMs).toBeLessThan(answerWithinMs);
      expect(result.out).not.toContain(cluster.nodeId(3));
    }
    expect(await cluster.readMd5(0, 'v')).toBe(md5(after));

    // Woken, it finds itself out and rejoins as a returning node.
    await cluster.kill(3, 'SIGCONT', false);
    await poll('node 3 to rejoin', () => cluster.log(3).includes('"msg":"rejoined the cluster"'), 20_000);
    await cluster.waitForMembers();
    const history = parseEpochHistory((await cluster.dogOk(['cluster', 'info'])).out);
    const all = [0, 1, 2, 3].map((i) => cluster.nodeId(i));
    expect(history.map((record) => record.nodes.length)).toEqual([4, 3, 4]);
    expect(history[0]!.nodes).toEqual(all);
    expect(cluster.running(3)).toBe(true);
    const holders = await cluster.waitForFullCopies([0, 1, 2, 3], 3, 60_000);
    // Every copy of every object is the same, node 3's included: it missed the write and caught up.
    for (const [oid, stores] of holders) {
      const sums = new Set(stores.map((i) => cluster.objectHash(i, oid)));
      expect(sums.size, `copies of ${oid} on ${stores.join(',')}`).toBe(1);
    }
    expect(await cluster.readMd5(3, 'v')).toBe(md5(after));
  });
});
