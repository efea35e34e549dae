// The cluster-driver contract (src/cluster/driver.ts, DESIGN.md), checked on real OS processes.
// One body for every driver: add an entry to `drivers` (zookeeper, when it exists) to run it too.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { localLeaveDetectMsMax } from '../src/engine/limits.js';
import { buildChild, makeTempDir, Member, type ChildRecord } from './support/driver-harness.js';
import { startZookeeper, stopAllZookeepers } from './support/zookeeper.js';

interface DriverUnderTest {
  name: string;
  /** Brings up what the driver needs (a ZooKeeper server). */
  setUp?(): Promise<void>;
  /** A fresh, empty cluster: the driver spec its members are started with. */
  newCluster(): string;
  leaveDetectMsMax: number;
}

/** A short session timeout keeps the test quick; the contract's bound is timeout + 2 s. */
const zkTimeoutSec = 3;
const zkPort = 12181;
let zkClusters = 0;

const workDir = makeTempDir('sd-driver-test-');
const drivers: DriverUnderTest[] = [
  {
    name: 'local',
    newCluster: () => `local:${fs.mkdtempSync(path.join(workDir, 'cluster-'))}`,
    leaveDetectMsMax: localLeaveDetectMsMax,
  },
  {
    name: 'zookeeper',
    setUp: async () => void (await startZookeeper(zkPort)),
    // One server, a fresh root znode per cluster.
    newCluster: () => `zookeeper:127.0.0.1:${zkPort}/contract${++zkClusters},timeout=${zkTimeoutSec}`,
    leaveDetectMsMax: zkTimeoutSec * 1000 + 2000,
  },
];

let script = '';
beforeAll(async () => {
  script = await buildChild(workDir);
});
afterAll(async () => {
  await stopAllZookeepers();
  fs.rmSync(workDir, { recursive: true, force: true });
});

const isAccepted = (r: ChildRecord): boolean => r.ev === 'joined' && (r.verdict as { accept: boolean }).accept;
const isGranted = (r: ChildRecord): boolean => r.ev === 'granted';
const indexOf = (m: Member, match: (r: ChildRecord) => boolean): number => m.records.findIndex(match);
const notifyOf = (message: unknown) => (r: ChildRecord) => r.ev === 'notify' && JSON.stringify(r.message) === JSON.stringify(message);

/**
 * One total order: every member first sees its own join, and any two members agree on the events
 * both saw (from the later one's join on). Pairwise, because no one list need hold them all: the
 * founder may be the one that leaves.
 */
function expectOneTotalOrder(members: Member[]): void {
  for (const later of members) {
    const events = later.clusterEvents();
    expect(events[0], `${later.id} first sees its own join`).toMatchObject({ ev: 'join', node: later.id });
    for (const earlier of members) {
      const seen = earlier.clusterEvents();
      const start = seen.findIndex((e) => e.ev === 'join' && e.node === later.id);
      if (earlier === later || start < 0) continue;
      const common = Math.min(seen.length - start, events.length);
      expect(events.slice(0, common), `${later.id} sees what ${earlier.id} saw`).toEqual(seen.slice(start, start + common));
    }
  }
}

function percentile(sortedMs: number[], fraction: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor(sortedMs.length * fraction))] ?? NaN;
}

describe.each(drivers)('cluster driver contract: $name', (driver) => {
  let members: Member[] = [];
  let nextPort = 7000;

  beforeAll(async () => {
    await driver.setUp?.();
  }, 90_000);

  function start(spec: string, count: number, refused: readonly string[] = []): Member[] {
    const started = Array.from({ length: count }, () => new Member(script, spec, nextPort++, refused));
    members.push(...started);
    return started;
  }

  async function startJoined(spec: string, count: number, refused: readonly string[] = []): Promise<Member[]> {
    const started = start(spec, count, refused);
    await Promise.all(started.map((m) => m.waitFor(isAccepted, 10_000, 'accepted join')));
    return started;
  }

  afterEach(() => {
    for (const member of members) member.stop();
    members = [];
  });

  it('admits nine processes started at once, all seeing one sequence of events', async () => {
    const spec = driver.newCluster();
    const nine = await startJoined(spec, 9);
    const full = (r: ChildRecord): boolean => r.ev === 'join' && (r.members as string[]).length === 9;
    await Promise.all(nine.map((m) => m.waitFor(full, 5000, 'the ninth join')));
    const finalMembers = nine[0]?.records.find(full)?.members;
    for (const m of nine) expect(m.records.find(full)?.members).toEqual(finalMembers);

    // checkJoin ran exactly once per joiner, cluster-wide.
    const checks = nine.flatMap((m) => m.records.filter((r) => r.ev === 'check_join').map((r) => r.joiner));
    expect([...checks].sort()).toEqual(nine.map((m) => m.id).sort());

    // Concurrent notifies, then a clean leave, all in one order everywhere.
    await Promise.all(nine.slice(0, 4).flatMap((m, i) => [m.run(`notify {"n":${i},"k":0}`), m.run(`notify {"n":${i},"k":1}`)]));
    const leaver = nine[8] as Member;
    await leaver.run('leave');
    const survivors = nine.slice(0, 8);
    await Promise.all(survivors.map((m) => m.waitFor((r) => r.ev === 'leave' && r.node === leaver.id)));
    expectOneTotalOrder(nine);
  });

  it('reports a SIGKILLed member as left on every survivor in time', async () => {
    const spec = driver.newCluster();
    const four = await startJoined(spec, 4);
    await Promise.all(four.map((m) => m.run('sync')));
    const victim = four[1] as Member;
    const killedAtMs = Date.now();
    victim.kill();
    const survivors = four.filter((m) => m !== victim);
    const leaves = await Promise.all(
      survivors.map((m) => m.waitFor((r) => r.ev === 'leave' && r.node === victim.id, driver.leaveDetectMsMax + 1000)),
    );
    const detectMs = leaves.map((leave) => leave.atMs - killedAtMs);
    console.log(`${driver.name} driver: SIGKILL reported as left after ${Math.max(...detectMs).toFixed(0)} ms at most`);
    for (const leave of leaves) {
      expect(leave.atMs - killedAtMs).toBeLessThan(driver.leaveDetectMsMax);
      expect(leave.members).not.toContain(victim.id);
    }
    expectOneTotalOrder(survivors);
  });

  it('reports a member that stops answering (SIGSTOP) as left in time; woken, it finds itself out', async () => {
    const spec = driver.newCluster();
    const four = await startJoined(spec, 4);
    await Promise.all(four.map((m) => m.run('sync')));
    const victim = four[2] as Member;
    const stoppedAtMs = Date.now();
    victim.signal('SIGSTOP');
    const survivors = four.filter((m) => m !== victim);
    const leaves = await Promise.all(
      survivors.map((m) => m.waitFor((r) => r.ev === 'leave' && r.node === victim.id, driver.leaveDetectMsMax + 3000)),
    );
    const detectMs = Math.max(...leaves.map((leave) => leave.atMs - stoppedAtMs));
    console.log(`${driver.name} driver: SIGSTOP reported as left after ${detectMs.toFixed(0)} ms at most`);
    expect(detectMs).toBeLessThan(driver.leaveDetectMsMax);
    for (const leave of leaves) expect(leave.members).not.toContain(victim.id);
    await survivors[0]!.run('notify "while-it-slept"');
    // Woken, it learns it was reported left (its own leave) before anything after, and stops.
    victim.signal('SIGCONT');
    const own = await victim.waitFor((r) => r.ev === 'leave' && r.node === victim.id, 5000, 'its own leave');
    expect(own.members).not.toContain(victim.id);
    expect(victim.records.some(notifyOf('while-it-slept'))).toBe(false);
    expect((await victim.run('notify "too-late"')).ev).toBe('error');
    expectOneTotalOrder(survivors);
  });

  it('restarts a cluster whose members all died: the newcomer reports them left and founds it', async () => {
    const spec = driver.newCluster();
    const old = await startJoined(spec, 3);
    for (const m of old) m.kill();
    await Promise.all(old.map((m) => m.waitExit()));
    // The same addr:port as a dead member: its previous incarnation must not block it.
    nextPort = Number(old[0]?.id.split(':')[1]);
    const [phoenix] = await startJoined(spec, 1);
    const events = (phoenix as Member).clusterEvents();
    expect(events).toEqual([{ ev: 'join', node: phoenix?.id, members: [phoenix?.id], payload: { decidedBy: phoenix?.id } }]);
  });

  it('has the next master answer a join whose master died while deciding', async () => {
    const spec = driver.newCluster();
    const slowJoinerId = `127.0.0.1:${nextPort + 2}`;
    const master = new Member(script, spec, nextPort++, [], slowJoinerId);
    members.push(master);
    await master.waitFor(isAccepted, 10_000, 'accepted join');
    const [second] = (await startJoined(spec, 1)) as [Member];
    // The master takes 3 s to decide on this joiner: kill it in the middle of deciding.
    const [joiner] = start(spec, 1) as [Member];
    expect(joiner.id).toBe(slowJoinerId);
    await master.waitFor((r) => r.ev === 'check_join' && r.joiner === joiner.id);
    master.kill();
    const joined = await joiner.waitFor(isAccepted, driver.leaveDetectMsMax + 2000, 'accepted join');
    expect(joined.verdict).toEqual({ accept: true, payload: { decidedBy: second.id } });
    expect(joiner.clusterEvents()[0]).toMatchObject({ node: joiner.id, members: [second.id, joiner.id] });
    await second.waitFor((r) => r.ev === 'join' && r.node === joiner.id);
    expectOneTotalOrder([second, joiner]);
  });

  it('delivers notifies in one order everywhere, the sender included', async () => {
    const spec = driver.newCluster();
    const three = await startJoined(spec, 3);
    const perSender = 15;
    await Promise.all(
      three.map((m, i) => Promise.all(Array.from({ length: perSender }, (_, k) => m.run(`notify {"s":${i},"k":${k}}`)))),
    );
    await Promise.all(three.map((m) => m.waitForCount((r) => r.ev === 'notify', 3 * perSender)));
    const orders = three.map((m) => m.records.filter((r) => r.ev === 'notify').map((r) => JSON.stringify(r.message)));
    expect(orders[1]).toEqual(orders[0]);
    expect(orders[2]).toEqual(orders[0]);
    // Each sender's own messages keep their sending order.
    for (let s = 0; s < 3; s++) {
      const ks = (orders[0] ?? []).map((m) => JSON.parse(m) as { s: number; k: number }).filter((m) => m.s === s);
      expect(ks.map((m) => m.k)).toEqual(Array.from({ length: perSender }, (_, k) => k));
    }
  });

  it('measures notify latency from send to delivery on another process', async () => {
    const spec = driver.newCluster();
    const [sender, receiver] = (await startJoined(spec, 2)) as [Member, Member];
    const latenciesMs: number[] = [];
    for (let k = 0; k < 30; k++) {
      const message = { latency: k };
      await sender.run(`notify ${JSON.stringify(message)}`);
      const delivered = await receiver.waitFor(notifyOf(message));
      const sent = sender.records.find((r) => r.ev === 'sending' && JSON.stringify(r.message) === JSON.stringify(message));
      latenciesMs.push(delivered.atMs - (sent?.atMs ?? NaN));
    }
    latenciesMs.sort((a, b) => a - b);
    const p50 = percentile(latenciesMs, 0.5);
    const p99 = percentile(latenciesMs, 0.99);
    console.log(`${driver.name} driver notify latency: p50 ${p50.toFixed(2)} ms, max ${p99.toFixed(2)} ms`);
    expect(p50).toBeLessThan(100);
  });

  it('keeps block mutually exclusive, the unblock message reaching all before the next grant', async () => {
    const spec = driver.newCluster();
    const [a, b, c] = (await startJoined(spec, 3)) as [Member, Member, Member];
    a.send('block');
    b.send('block');
    const first = await Promise.race([a, b].map((m) => m.waitFor(isGranted).then(() => m)));
    const second = first === a ? b : a;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(second.records.some(isGranted), 'the second must wait').toBe(false);

    const unblockedAtMs = Date.now();
    await first.run('unblock "released-by-first"');
    const grant = await second.waitFor(isGranted);
    expect(grant.atMs).toBeGreaterThanOrEqual(unblockedAtMs);
    const released = notifyOf('released-by-first');
    expect(indexOf(second, released)).toBeGreaterThanOrEqual(0);
    expect(indexOf(second, released)).toBeLessThan(indexOf(second, isGranted));
    await Promise.all([first, c].map((m) => m.waitFor(released)));
    await second.run('unblock "released-by-second"');
    await Promise.all([a, b, c].map((m) => m.waitFor(notifyOf('released-by-second'))));
    expectOneTotalOrder([a, b, c]);
  });

  it('releases the lock of a holder killed with SIGKILL', async () => {
    const spec = driver.newCluster();
    const [holder, waiter] = (await startJoined(spec, 3)) as [Member, Member, Member];
    await holder.run('block');
    waiter.send('block');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(waiter.records.some(isGranted)).toBe(false);
    const killedAtMs = Date.now();
    holder.kill();
    const grant = await waiter.waitFor(isGranted, driver.leaveDetectMsMax + 1000);
    expect(grant.atMs - killedAtMs).toBeLessThan(driver.leaveDetectMsMax);
    const left = indexOf(waiter, (r) => r.ev === 'leave' && r.node === holder.id);
    expect(left).toBeGreaterThanOrEqual(0);
    expect(left).toBeLessThan(indexOf(waiter, isGranted));
  });

  it('refuses a join the master rejects, and the refused node sees no event', async () => {
    const spec = driver.newCluster();
    const refusedId = `127.0.0.1:${nextPort + 2}`;
    const [a, b] = (await startJoined(spec, 2, [refusedId])) as [Member, Member];
    const [outcast] = start(spec, 1, [refusedId]) as [Member];
    expect(outcast.id).toBe(refusedId);
    const joined = await outcast.waitFor((r) => r.ev === 'joined', 5000);
    expect(joined.verdict).toEqual({ accept: false, reason: `refused ${refusedId}` });
    await a.run('notify "after-refusal"');
    await Promise.all([a, b].map((m) => m.waitFor(notifyOf('after-refusal'))));
    expect(outcast.clusterEvents()).toEqual([]);
    for (const m of [a, b]) expect(m.clusterEvents().some((e) => e.node === refusedId)).toBe(false);
    // A refused driver holds no timer or watcher: the process can exit.
    outcast.send('exit');
    await outcast.waitExit(3000);
  });

  it('lets a member that leaves exit: no timer or watcher is left behind', async () => {
    const spec = driver.newCluster();
    const [a, b] = (await startJoined(spec, 2)) as [Member, Member];
    b.send('exit');
    await b.waitExit(3000);
    const leave = await a.waitFor((r) => r.ev === 'leave' && r.node === b.id);
    expect(leave.members).toEqual([a.id]);
  });

  it('refuses a second live process claiming the id of a member', async () => {
    const spec = driver.newCluster();
    const [a] = (await startJoined(spec, 1)) as [Member];
    nextPort = Number(a.id.split(':')[1]);
    const [twin] = start(spec, 1) as [Member];
    const joined = await twin.waitFor((r) => r.ev === 'joined', driver.leaveDetectMsMax + 3000);
    expect(joined.verdict).toMatchObject({ accept: false });
    expect(twin.clusterEvents()).toEqual([]);
    await a.run('notify "still-alone"');
    expect(a.clusterEvents().filter((e) => e.ev === 'join')).toHaveLength(1);
  });
});
