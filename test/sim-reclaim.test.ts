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
import { simNetworkFaults, simStaleRemovalMs } from '../src/sim/run.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { realSheep } from '../src/sim/sheep-node.js';
import { objectSizeShift } from '../src/sim/workload.js';

const quietLog: SimLog = { debug() {}, info() {}, warn() {}, error() {} };
const limitMs = 10 * 60_000;
const objectBytes = 2 ** objectSizeShift;
const objectsWritten = 8;

test('objects of a VDI deleted while a replica was away are reclaimed once it is back', async () => {
  const scheduler = new Scheduler();
  const network = new SimNetwork(scheduler, seededRandom(1), { ...simNetworkFaults, resetAfterChunk: 0, connectFailure: 0 });
  const hosts = new Hosts(scheduler, network, new SimCluster(scheduler, seededRandom(2)), 3, realSheep, quietLog);
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
  const [gateway, , , away] = all as [typeof all[0], typeof all[0], typeof all[0], typeof all[0]];
  await wait(gateway.sheep()!.format(3, objectSizeShift));
  await settle();
  await wait(gateway.sheep()!.createVdi('doomed', objectsWritten * objectBytes));
  const volume = await wait(gateway.sheep()!.open('doomed'));
  for (let i = 0; i < objectsWritten; i++) await wait(volume.write(i * objectBytes, Buffer.alloc(4096, i + 1)));
  const vid = gateway.sheep()!.state().registry.find((e) => e.name === 'doomed')!.vid;
  const held = async (host: typeof gateway) => (await wait(host.sheep()!.objects())).filter((oid) => oidVid(oid) === vid);
  expect((await held(away)).length).toBeGreaterThan(0);

  await wait(hosts.leave(away));
  await settle();
  await wait(gateway.sheep()!.deleteVdi('doomed', undefined));
  for (const host of hosts.up()) expect(await held(host)).toEqual([]);

  expect(await wait(hosts.start(away))).toBe(true);
  await settle();
  for (const host of hosts.up()) expect(await held(host), host.id).toEqual([]);
}, 5 * 60_000);
