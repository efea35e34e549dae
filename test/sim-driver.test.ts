// The cluster-driver contract (src/cluster/driver.ts), the expectations of
// test/cluster-driver.test.ts, checked on the simulated driver: members in one process over one
// in-memory log, time simulated, so a scenario that takes seconds on processes takes microseconds.
import { describe, expect, test } from 'vitest';
import type { ClusterHandlers, Json, NodeInfo } from '../src/cluster/driver.js';
import { localLeaveDetectMsMax } from '../src/engine/limits.js';
import { seededRandom } from '../src/io/random.js';
import { SimCluster, type SimClusterDriver } from '../src/sim/driver.js';
import { Scheduler } from '../src/sim/scheduler.js';

interface Record_ {
  ev: string;
  atMs: number;
  [key: string]: unknown;
}

class Member {
  readonly records: Record_[] = [];
  readonly driver: SimClusterDriver;
  readonly id: string;

  constructor(
    readonly world: World,
    port: number,
    refused: ReadonlySet<string> = new Set(),
  ) {
    this.id = `10.0.0.1:${port}`;
    this.driver = world.cluster.driver();
    const self: NodeInfo = { id: this.id, addr: '10.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 };
    const emit = (record: Omit<Record_, 'atMs'>) => this.records.push({ ...record, atMs: world.clock.nowMs() } as Record_);
    const handlers: ClusterHandlers = {
      checkJoin: (joiner) => {
        emit({ ev: 'check_join', joiner: joiner.id });
        if (refused.has(joiner.id)) return { accept: false, reason: `refused ${joiner.id}` };
        return { accept: true, payload: { decidedBy: this.id } };
      },
      onJoin: (joiner, members, payload) => emit({ ev: 'join', node: joiner.id, members: members.map((m) => m.id), payload }),
      onLeave: (node, members) => emit({ ev: 'leave', node: node.id, members: members.map((m) => m.id) }),
      onNotify: (from, message) => emit({ ev: 'notify', from: from.id, message }),
    };
    this.joined = this.driver.join(self, { port }, handlers).then((verdict) => {
      emit({ ev: 'joined', verdict: verdict as unknown as Json });
      return verdict.accept;
    });
  }

  readonly joined: Promise<boolean>;

  clusterEvents(): Array<Record<string, unknown>> {
    return this.records
      .filter((r) => r.ev === 'join' || r.ev === 'leave' || r.ev === 'notify')
      .map(({ atMs: _atMs, ...rest }) => rest);
  }

  find(match: (r: Record_) => boolean): Record_ | undefined {
    return this.records.find(match);
  }
}

class World {
  readonly clock = new Scheduler();
  readonly cluster: SimCluster;
  private nextPort = 7000;

  constructor(seed: number) {
    this.cluster = new SimCluster(this.clock, seededRandom(seed));
  }

  start(count: number, refused: ReadonlySet<string> = new Set(), port?: number): Member[] {
    if (port !== undefined) this.nextPort = port;
    return Array.from({ length: count }, () => new Member(this, this.nextPort++, refused));
  }

  async startJoined(count: number, refused: ReadonlySet<string> = new Set()): Promise<Member[]> {
    const started = this.start(count, refused);
    const all = await this.settle(Promise.all(started.map((m) => m.joined)));
    expect(all).toEqual(started.map(() => true));
    return started;
  }

  /** Runs the simulation until `promise` settles; fails the test if it does not within 60 s. */
  async settle<T>(promise: Promise<T>, limitMs = 60_000): Promise<T> {
    const outcome = await this.clock.settle(promise, limitMs);
    if (!outcome.done) throw outcome.error ?? new Error(`not settled within ${limitMs} simulated ms`);
    return outcome.value;
  }

  async until(condition: () => boolean, limitMs = 60_000): Promise<void> {
    await this.clock.run({ until: condition, untilMs: this.clock.nowMs() + limitMs });
    expect(condition()).toBe(true);
  }
}

const notifyOf = (message: unknown) => (r: Record_) => r.ev === 'notify' && JSON.stringify(r.message) === JSON.stringify(message);
const isGranted = (r: Record_) => r.ev === 'granted';

function expectOneTotalOrder(members: Member[]): void {
  const reference = members
    .map((m) => m.clusterEvents())
    .reduce((longest, events) => (events.length > longest.length ? events : longest));
  for (const member of members) {
    const events = member.clusterEvents();
    expect(events[0], `${member.id} first sees its own join`).toMatchObject({ ev: 'join', node: member.id });
    const start = reference.findIndex((e) => e.ev === 'join' && e.node === member.id);
    expect(events, `${member.id} sees the same sequence`).toEqual(reference.slice(start, start + events.length));
  }
}

const seeds = [1, 2, 3, 4, 5];

describe.each(seeds)('simulated cluster driver contract, seed %i', (seed) => {
  test('admits nine members started at once, all seeing one sequence of events', async () => {
    const world = new World(seed);
    const nine = await world.startJoined(9);
    const full = (r: Record_) => r.ev === 'join' && (r.members as string[]).length === 9;
    await world.until(() => nine.every((m) => m.find(full)));
    const finalMembers = nine[0]!.find(full)?.members;
    for (const m of nine) expect(m.find(full)?.members).toEqual(finalMembers);
    const checks = nine.flatMap((m) => m.records.filter((r) => r.ev === 'check_join').map((r) => r.joiner));
    expect([...checks].sort()).toEqual(nine.map((m) => m.id).sort());

    await world.settle(Promise.all(nine.slice(0, 4).flatMap((m, i) => [m.driver.notify({ n: i, k: 0 }), m.driver.notify({ n: i, k: 1 })])));
    const leaver = nine[8]!;
    await world.settle(leaver.driver.leave());
    await world.until(() => nine.slice(0, 8).every((m) => m.find((r) => r.ev === 'leave' && r.node === leaver.id)));
    expectOneTotalOrder(nine);
  });

  test('reports a crashed member as left on every survivor in time', async () => {
    const world = new World(seed);
    const four = await world.startJoined(4);
    await world.settle(Promise.all(four.map((m) => m.driver.sync())));
    const victim = four[1]!;
    const killedAtMs = world.clock.nowMs();
    world.cluster.crash(victim.driver);
    const survivors = four.filter((m) => m !== victim);
    const leftOn = (m: Member) => m.find((r) => r.ev === 'leave' && r.node === victim.id);
    await world.until(() => survivors.every(leftOn));
    for (const m of survivors) {
      expect(leftOn(m)!.atMs - killedAtMs).toBeLessThan(localLeaveDetectMsMax);
      expect(leftOn(m)!.members).not.toContain(victim.id);
    }
    expectOneTotalOrder(survivors);
  });

  test('reports a member that stops answering as left in time; resumed, it finds itself out', async () => {
    const world = new World(seed);
    const four = await world.startJoined(4);
    await world.settle(Promise.all(four.map((m) => m.driver.sync())));
    const victim = four[2]!;
    const stoppedAtMs = world.clock.nowMs();
    world.cluster.pause(victim.driver);
    const survivors = four.filter((m) => m !== victim);
    const leftOn = (m: Member) => m.find((r) => r.ev === 'leave' && r.node === victim.id);
    await world.until(() => survivors.every(leftOn));
    for (const m of survivors) {
      expect(leftOn(m)!.atMs - stoppedAtMs).toBeLessThan(localLeaveDetectMsMax);
      expect(leftOn(m)!.members).not.toContain(victim.id);
    }
    await world.settle(survivors[0]!.driver.notify('while-it-slept'));
    expect(leftOn(victim)).toBeUndefined();
    world.cluster.resume(victim.driver);
    await world.until(() => leftOn(victim) !== undefined);
    expect(leftOn(victim)!.members).not.toContain(victim.id);
    expect(victim.find(notifyOf('while-it-slept'))).toBeUndefined();
    await expect(world.settle(victim.driver.notify('too late'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expectOneTotalOrder(survivors);
  });

  test('restarts a cluster whose members all died: the newcomer reports them left and founds it', async () => {
    const world = new World(seed);
    const old = await world.startJoined(3);
    for (const m of old) world.cluster.crash(m.driver);
    const [phoenix] = world.start(1, new Set(), Number(old[0]!.id.split(':')[1]));
    expect(await world.settle(phoenix!.joined)).toBe(true);
    expect(phoenix!.clusterEvents()).toEqual([
      { ev: 'join', node: phoenix!.id, members: [phoenix!.id], payload: { decidedBy: phoenix!.id } },
    ]);
  });

  test('has the next master answer a join whose master died before answering', async () => {
    const world = new World(seed);
    const [master, second] = await world.startJoined(2);
    // The master dies right after it is asked, before its answer is in the log.
    const [joiner] = world.start(1);
    const asked = () => master!.find((r) => r.ev === 'check_join' && r.joiner === joiner!.id) !== undefined;
    world.cluster.crash(master!.driver);
    expect(asked()).toBe(false);
    expect(await world.settle(joiner!.joined)).toBe(true);
    expect(joiner!.find((r) => r.ev === 'joined')?.verdict).toEqual({ accept: true, payload: { decidedBy: second!.id } });
    expect(joiner!.clusterEvents()[0]).toMatchObject({ node: joiner!.id, members: [second!.id, joiner!.id] });
    await world.until(() => second!.find((r) => r.ev === 'join' && r.node === joiner!.id) !== undefined);
    expectOneTotalOrder([second!, joiner!]);
  });

  test('delivers notifies in one order everywhere, the sender included, each sender in its order', async () => {
    const world = new World(seed);
    const three = await world.startJoined(3);
    const perSender = 15;
    await world.settle(
      Promise.all(three.map((m, i) => Promise.all(Array.from({ length: perSender }, (_, k) => m.driver.notify({ s: i, k }))))),
    );
    await world.until(() => three.every((m) => m.records.filter((r) => r.ev === 'notify').length === 3 * perSender));
    const orders = three.map((m) => m.records.filter((r) => r.ev === 'notify').map((r) => JSON.stringify(r.message)));
    expect(orders[1]).toEqual(orders[0]);
    expect(orders[2]).toEqual(orders[0]);
    for (let s = 0; s < 3; s++) {
      const ks = orders[0]!.map((m) => JSON.parse(m) as { s: number; k: number }).filter((m) => m.s === s);
      expect(ks.map((m) => m.k)).toEqual(Array.from({ length: perSender }, (_, k) => k));
    }
  });

  test('keeps block mutually exclusive, the unblock message reaching all before the next grant', async () => {
    const world = new World(seed);
    const [a, b, c] = await world.startJoined(3);
    const grant = (m: Member) => m.driver.block().then(() => m.records.push({ ev: 'granted', atMs: world.clock.nowMs() }));
    const granted = [grant(a!), grant(b!)];
    await world.until(() => a!.records.some(isGranted) || b!.records.some(isGranted));
    const first = a!.records.some(isGranted) ? a! : b!;
    const second = first === a ? b! : a!;
    await world.clock.runFor(300);
    expect(second.records.some(isGranted), 'the second must wait').toBe(false);
    await world.settle(first.driver.unblock('released-by-first'));
    await world.settle(granted[second === a ? 0 : 1]!);
    const released = notifyOf('released-by-first');
    const releasedAt = second.records.findIndex(released);
    expect(releasedAt).toBeGreaterThanOrEqual(0);
    expect(releasedAt).toBeLessThan(second.records.findIndex(isGranted));
    await world.until(() => [first, c!].every((m) => m.find(released)));
    await world.settle(second.driver.unblock('released-by-second'));
    await world.until(() => [a!, b!, c!].every((m) => m.find(notifyOf('released-by-second'))));
    expectOneTotalOrder([a!, b!, c!]);
  });

  test('releases the lock of a holder that crashed', async () => {
    const world = new World(seed);
    const [holder, waiter] = await world.startJoined(3);
    await world.settle(holder!.driver.block());
    let grantedAtMs: number | undefined;
    void waiter!.driver.block().then(() => (grantedAtMs = world.clock.nowMs()));
    await world.clock.runFor(200);
    expect(grantedAtMs).toBeUndefined();
    const killedAtMs = world.clock.nowMs();
    world.cluster.crash(holder!.driver);
    await world.until(() => grantedAtMs !== undefined);
    expect(grantedAtMs! - killedAtMs).toBeLessThan(localLeaveDetectMsMax);
    expect(waiter!.find((r) => r.ev === 'leave' && r.node === holder!.id)).toBeDefined();
  });

  test('refuses a join the master rejects, and the refused node sees no event', async () => {
    const world = new World(seed);
    const refusedId = '10.0.0.1:7002';
    const [a, b] = await world.startJoined(2, new Set([refusedId]));
    const [outcast] = world.start(1, new Set([refusedId]));
    expect(outcast!.id).toBe(refusedId);
    expect(await world.settle(outcast!.joined)).toBe(false);
    expect(outcast!.find((r) => r.ev === 'joined')?.verdict).toEqual({ accept: false, reason: `refused ${refusedId}` });
    await world.settle(a!.driver.notify('after-refusal'));
    await world.until(() => [a!, b!].every((m) => m.find(notifyOf('after-refusal'))));
    expect(outcast!.clusterEvents()).toEqual([]);
    for (const m of [a!, b!]) expect(m.clusterEvents().some((e) => e.node === refusedId)).toBe(false);
    // Nothing of the refused member stays scheduled: the world runs dry once members are quiet.
    expect(await world.clock.run()).toBe('idle');
  });

  test('refuses a second live incarnation claiming the id of a member', async () => {
    const world = new World(seed);
    const [a] = await world.startJoined(1);
    const [twin] = world.start(1, new Set(), Number(a!.id.split(':')[1]));
    expect(await world.settle(twin!.joined)).toBe(false);
    expect(twin!.clusterEvents()).toEqual([]);
    await world.settle(a!.driver.notify('still-alone'));
    expect(a!.clusterEvents().filter((e) => e.ev === 'join')).toHaveLength(1);
  });

  test('an expelled member hears its own leave and stops; the others see it leave', async () => {
    const world = new World(seed);
    const [a, b] = await world.startJoined(2);
    world.cluster.expel(b!.driver);
    await world.until(() => [a!, b!].every((m) => m.find((r) => r.ev === 'leave' && r.node === b!.id)));
    await expect(world.settle(b!.driver.notify('too late'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(a!.find((r) => r.ev === 'leave')?.members).toEqual([a!.id]);
  });
});

test('one seed, one history: the same seed gives the same log, another seed another', async () => {
  async function history(seed: number): Promise<string> {
    const world = new World(seed);
    const members = await world.startJoined(5);
    await world.settle(Promise.all(members.map((m, i) => m.driver.notify({ i }))));
    world.cluster.crash(members[2]!.driver);
    await world.clock.runFor(5000);
    return JSON.stringify(world.cluster.log) + world.clock.nowMs();
  }
  const first = await history(42);
  expect(await history(42)).toBe(first);
  expect(await history(43)).not.toBe(first);
});
