// The zookeeper driver in-process, over an in-memory ZooKeeper (test/support/fake-zookeeper.ts),
// for what a real server cannot be made to do on cue: a create applied whose reply is lost, a
// dropped connection given back within the session, a session expired under a live member.
// The contract on real processes and a real server is test/cluster-driver.test.ts.
import { describe, expect, it } from 'vitest';
import type { ClusterHandlers, Json, NodeInfo } from '../src/cluster/driver.js';
import { createZkDriver, type ZkClusterDriver } from '../src/cluster/zookeeper.js';
import { systemClock } from '../src/io/clock.js';
import { seededRandom } from '../src/io/random.js';
import { FakeZookeeper, type FakeSession } from './support/fake-zookeeper.js';

interface Seen {
  events: string[];
  coordinator: boolean[];
}

function node(port: number): NodeInfo {
  return { id: `127.0.0.1:${port}`, addr: '127.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 };
}

function recorder(seen: Seen): ClusterHandlers {
  return {
    checkJoin: () => ({ accept: true, payload: null }),
    onJoin: (joiner, members) => void seen.events.push(`join ${joiner.port} [${members.map((m) => m.port).join(',')}]`),
    onLeave: (left, members) => void seen.events.push(`leave ${left.port} [${members.map((m) => m.port).join(',')}]`),
    onNotify: (from, message: Json) => void seen.events.push(`notify ${from.port} ${JSON.stringify(message)}`),
    onCoordinator: (reachable) => void seen.coordinator.push(reachable),
  };
}

async function member(zk: FakeZookeeper, port: number, seed: number): Promise<{ driver: ZkClusterDriver; seen: Seen; session: FakeSession }> {
  const seen: Seen = { events: [], coordinator: [] };
  const driver = createZkDriver({
    spec: { servers: [{ host: '127.0.0.1', port: 1 }], sessionTimeoutMs: 3000, root: '/t' },
    connect: zk.connect,
    clock: systemClock,
    random: seededRandom(seed),
  });
  const verdict = await driver.join(node(port), null, recorder(seen));
  expect(verdict.accept).toBe(true);
  return { driver, seen, session: zk.sessions.at(-1)! };
}

describe('zookeeper driver over a ZooKeeper that fails on cue', () => {
  it('sends again a create whose reply was lost, and delivers it once', async () => {
    const zk = new FakeZookeeper();
    const a = await member(zk, 1, 1);
    const b = await member(zk, 2, 2);
    await b.driver.sync();
    a.session.loseNextCreateReply = true;
    const sent = a.driver.notify('once');
    expect(a.seen.coordinator).toEqual([false]);
    a.session.reconnect();
    await sent;
    await a.driver.notify('after');
    await b.driver.sync();
    const entries = zk.children('/t/queue').length;
    // Two joins (request and response each), 'once' twice in the queue, 'after'.
    expect(entries).toBe(7);
    const notifies = (seen: Seen) => seen.events.filter((e) => e.startsWith('notify'));
    expect(notifies(a.seen)).toEqual(['notify 1 "once"', 'notify 1 "after"']);
    expect(notifies(b.seen)).toEqual(notifies(a.seen));
    expect(a.seen.coordinator).toEqual([false, true]);
    a.driver.close();
    b.driver.close();
  });

  it('tells the layer above when the coordinator is gone and back, with no membership change', async () => {
    const zk = new FakeZookeeper();
    const a = await member(zk, 1, 3);
    const b = await member(zk, 2, 4);
    b.session.disconnect();
    expect(b.seen.coordinator).toEqual([false]);
    await a.driver.notify('meanwhile');
    b.session.reconnect();
    await b.driver.sync();
    expect(b.seen.coordinator).toEqual([false, true]);
    expect(b.seen.events).toEqual(['join 2 [1,2]', 'notify 1 "meanwhile"']);
    a.driver.close();
    b.driver.close();
  });

  it('reports an expired session as this node leaving, and the others see it leave', async () => {
    const zk = new FakeZookeeper();
    const a = await member(zk, 1, 5);
    const b = await member(zk, 2, 6);
    await a.driver.sync();
    b.session.expire();
    expect(b.seen.events.at(-1)).toBe('leave 2 [1]');
    await expect(b.driver.notify('too late')).rejects.toThrow(/needs a joined node/);
    await expect.poll(() => a.seen.events.at(-1)).toBe('leave 2 [1]');
    a.driver.close();
  });
});
