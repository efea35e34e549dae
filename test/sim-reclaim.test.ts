// A delete while a replica is away: when it returns, its copies of the deleted VDI's objects
// must be reclaimed (DESIGN.md: once faults heal, no orphan objects). Scripted on the simulator's
// parts (real sheep, simulated network, disks, driver and time), so it is exact and fast.
import { expect, test } from 'vitest';
import { oidVid } from '../src/engine/oid.js';
import { seededRandom } from '../src/io/random.js';
import { settled } from '../src/sim/check.js';
import { SimCluster } from '../src/sim/driver.js';
import { Hosts } from '../src/sim/hosts.js';
import { SimNetwork } from '../src/sim/network.js';
import type { SimLog } from '../src/sim/node.js';
import type { SimHost } from '../src/sim/hosts.js';
import { simNetworkFaults, simStaleRemovalMs } from '../src/sim/run.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { realSheep } from '../src/sim/sheep-node.js';
import { objectSizeShift } from '../src/sim/workload.js';

const quietLog: SimLog = { debug() {}, info() {}, warn() {}, error() {} };
const limitMs = 10 * 60_000;
const objectBytes = 2 ** objectSizeShift;
const objectsWritten = 8;

async function cluster() {
  const scheduler = new Scheduler();
  const network = new SimNetwork(scheduler, seededRandom(1), { ...simNetworkFaults, resetAfterChunk: 0, connectFailure: 0 });
  const hosts = new Hosts(scheduler, network, new SimCluster(scheduler, seededRandom(2)), 3, realSheep, () => quietLog);
  const wait = async <T>(promise: Promise<T>): Promise<T> => {
    const outcome = await scheduler.settle(promise, limitMs);
    if (outcome.done) return outcome.value;
    throw 'error' in outcome ? outcome.error : new Error('did not finish in simulated time');
  };
  const settle = async () => {
    await scheduler.run({ until: () => settled(hosts.up()), untilMs: scheduler.nowMs() + limitMs });
    expect(settled(hosts.up())).toBe(true);
    await scheduler.runFor(simStaleRemovalMs);
  };
  const all = [hosts.add(), hosts.add(), hosts.add(), hosts.add()];
  expect(await wait(Promise.all(all.map((host) => hosts.start(host))))).toEqual([true, true, true, true]);
  const gateway = all[0]!.sheep()!;
  await wait(gateway.format(3, objectSizeShift));
  await settle();
  await wait(gateway.createVdi('doomed', objectsWritten * objectBytes));
  const volume = await wait(gateway.open('doomed'));
  for (let i = 0; i < objectsWritten; i++) await wait(volume.write(i * objectBytes, Buffer.alloc(4096, i + 1)));
  const vid = gateway.state().registry.find((e) => e.name === 'doomed')!.vid;
  const held = async (host: SimHost) => (await wait(host.sheep()!.objects())).filter((oid) => oidVid(oid) === vid);
  return { hosts, all, gateway, wait, settle, held };
}

test('objects of a VDI deleted while a replica was away are reclaimed once it is back', async () => {
  const { hosts, all, gateway, wait, settle, held } = await cluster();
  const away = all[3]!;
  expect((await held(away)).length).toBeGreaterThan(0);
  await wait(hosts.leave(away));
  await settle();
  await wait(gateway.deleteVdi('doomed', undefined));
  for (const host of hosts.up()) expect(await held(host)).toEqual([]);

  expect(await wait(hosts.start(away))).toBe(true);
  await settle();
  for (const host of hosts.up()) expect(await held(host), host.id).toEqual([]);
}, 5 * 60_000);

test('what a live clone shares of a deleted snapshot survives the reclaim after a return', async () => {
  const { hosts, all, gateway, wait, settle, held } = await cluster();
  await wait(gateway.snapshot('doomed', 's'));
  await wait(gateway.clone('doomed', 's', 'kept'));
  const away = all[3]!;
  await wait(hosts.leave(away));
  await settle();
  await wait(gateway.deleteVdi('doomed', undefined));
  await wait(gateway.deleteVdi('doomed', 's'));
  expect(await wait(hosts.start(away))).toBe(true);
  await settle();
  // The snapshot's data objects stay (the clone points at them) on exactly their replicas.
  for (const host of hosts.up()) {
    const node = host.sheep()!;
    const own = (await held(host)).filter((oid) => node.placement(oid).includes(host.id));
    expect(own.length, host.id).toBeGreaterThan(0);
  }
  for (const host of hosts.up()) {
    const clone = await wait(host.sheep()!.open('kept'));
    for (let i = 0; i < objectsWritten; i++) {
      expect(await wait(clone.read(i * objectBytes, 4096)), `${host.id} object ${i}`).toEqual(Buffer.alloc(4096, i + 1));
    }
  }
}, 5 * 60_000);
