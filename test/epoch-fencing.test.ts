// Epoch fencing: the receiver's check (fast, on a manual clock), and whole sheep in one process
// (memory transport, a bus driver that lets one member fall behind) showing both directions.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeInfo } from '../src/cluster/driver.js';
import { SdError } from '../src/engine/errors.js';
import { asVid, dataOid } from '../src/engine/oid.js';
import { systemClock } from '../src/io/clock.js';
import { nodeDisk } from '../src/io/disk.js';
import { silentLog } from '../src/io/log.js';
import { seededRandom } from '../src/io/random.js';
import { FrameDecoder } from '../src/rpc/frame.js';
import { admitPeerRequest } from '../src/sheep/epoch-fence.js';
import { Group } from '../src/sheep/group.js';
import { Sheep } from '../src/sheep/sheep.js';
import type { MetaStore } from '../src/store/meta.js';
import { Bus } from './support/bus-driver.js';
import { ManualClock } from './support/manual-clock.js';
import { MemoryTransport } from './support/memory-transport.js';

const node = (port: number): NodeInfo => ({ id: `127.0.0.1:${port}`, addr: '127.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 });

/** A running group at epoch 1 with members 1 and 2; each `leave` makes the next epoch. */
function runningGroup(clock: ManualClock) {
  const meta = { writeEpoch: async () => undefined, writeConfig: async () => undefined } as unknown as MetaStore;
  const group = new Group(node(1), meta, clock, silentLog);
  group.config = { createdMs: 1, copies: 2, blockSizeShift: 22 };
  group.status = 'running';
  group.members = [node(1), node(2), node(3)];
  group.epochs = [{ epoch: 1, timeSec: 1, nodes: group.members }];
  const leave = (port: number) => group.onLeave(node(port), group.members.filter((m) => m.port !== port));
  return { group, leave };
}

async function refusal(promise: Promise<unknown>): Promise<SdError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  if (!(error instanceof SdError)) throw new Error(`expected an SdError, got ${String(error)}`);
  return error;
}

describe('the receiver fence', () => {
  it('admits a request of its own epoch at once', async () => {
    const { group } = runningGroup(new ManualClock());
    await expect(admitPeerRequest(group, { epoch: 1, from: 'x' }, 3000)).resolves.toBeUndefined();
  });

  it('refuses an older epoch with OLD_EPOCH carrying its own', async () => {
    const { group, leave } = runningGroup(new ManualClock());
    leave(3);
    const error = await refusal(admitPeerRequest(group, { epoch: 1, from: 'x' }, 3000));
    expect([error.code, error.epoch]).toEqual(['OLD_EPOCH', 2]);
  });

  it('holds a newer epoch until it catches up, woken by the epoch change', async () => {
    const clock = new ManualClock();
    const { group, leave } = runningGroup(clock);
    let admitted = false;
    const held = admitPeerRequest(group, { epoch: 2, from: 'x' }, 3000).then(() => (admitted = true));
    await clock.advance(2999);
    expect(admitted).toBe(false);
    leave(3);
    await held;
    expect(admitted).toBe(true);
    expect(clock.pending).toBe(0); // the hold's timer went with it
  });

  it('refuses a newer epoch with NEW_EPOCH when it does not catch up in time', async () => {
    const clock = new ManualClock();
    const { group } = runningGroup(clock);
    const held = refusal(admitPeerRequest(group, { epoch: 2, from: 'x' }, 3000));
    await clock.advance(3000);
    expect((await held).code).toBe('NEW_EPOCH');
  });

  it('refuses a held request with OLD_EPOCH when the receiver overtakes it', async () => {
    const clock = new ManualClock();
    const { group, leave } = runningGroup(clock);
    const held = refusal(admitPeerRequest(group, { epoch: 2, from: 'x' }, 3000));
    group.members = [node(1), node(2), node(3), node(4)];
    leave(4);
    leave(3);
    const error = await held;
    expect([error.code, error.epoch]).toEqual(['OLD_EPOCH', 3]);
  });
});

describe('sheep in one process, one member behind', () => {
  const dirs: string[] = [];
  const sheep: Sheep[] = [];
  afterEach(async () => {
    await Promise.all(sheep.splice(0).map((s) => s.stop(0)));
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function cluster() {
    const transport = new MemoryTransport();
    const bus = new Bus();
    const start = async (port: number) => {
      const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sheep-fence-'));
      dirs.push(storeDir);
      const world = { clock: systemClock, transport, disk: nodeDisk, driver: bus.driver(), random: seededRandom(port), log: silentLog };
      const s = new Sheep(world, { storeDir, bindAddr: '127.0.0.1', self: node(port), nbd: null });
      sheep.push(s);
      await s.start();
      return s;
    };
    const [a, b] = [await start(1), await start(2)];
    await a.admin.format(3, 20); // 1 MiB objects
    // Replies that refuse a request for its epoch, as they leave a server.
    const decoder = new FrameDecoder();
    const refusals: string[] = [];
    transport.tap = (chunk) => {
      for (const frame of decoder.push(chunk)) {
        const code = frame.header['code'];
        if (code === 'OLD_EPOCH' || code === 'NEW_EPOCH') refusals.push(code);
      }
    };
    return { a, b, bus, start, refusals };
  }

  const object = (fill: number) => Buffer.alloc(1024 * 1024, fill);
  const until = async (what: string, condition: () => Promise<boolean> | boolean) => {
    for (let i = 0; i < 500; i++) {
      if (await condition()) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  it('a write from a newer epoch is held by the member behind, and applied once it catches up', async () => {
    const { a, b, bus, start } = await cluster();
    bus.pause(b.config.self.id);
    const c = await start(3);
    expect([a.group.epoch, b.group.epoch, c.group.epoch]).toEqual([2, 1, 2]);
    const oid = dataOid(asVid(5), 0);
    let acknowledged = false;
    const write = a.gateway.write(oid, 0, object(7), true).then(() => (acknowledged = true));
    await until('the copy on C', () => c.store.exists(oid));
    expect(await b.store.exists(oid)).toBe(false); // held, not applied under epoch 1
    expect(acknowledged).toBe(false);
    bus.resume(b.config.self.id);
    await write;
    expect(b.group.epoch).toBe(2);
    expect((await b.store.read(oid, 0, 4)).equals(Buffer.alloc(4, 7))).toBe(true);
  });

  it('a write from an older epoch is refused, and its sender catches up, re-plans and retries', async () => {
    const { a, b, bus, start, refusals } = await cluster();
    bus.pause(b.config.self.id);
    const c = await start(3);
    const oid = dataOid(asVid(6), 0);
    // B still plans on epoch 1 (A and B); A, on epoch 2, refuses.
    expect(b.placement.nodes(oid).map((n) => n.port).sort()).toEqual([1, 2]);
    let acknowledged = false;
    const write = b.gateway.write(oid, 0, object(9), true).then(() => (acknowledged = true));
    await until('the refusal', () => refusals.includes('OLD_EPOCH'));
    expect(await a.store.exists(oid)).toBe(false); // never applied under the older epoch
    expect(acknowledged).toBe(false); // B waits for its own epoch 2
    bus.resume(b.config.self.id);
    await write;
    // Planned again under epoch 2: all three members hold it.
    for (const s of [a, b, c]) expect((await s.store.read(oid, 0, 4)).equals(Buffer.alloc(4, 9))).toBe(true);
  });

  it('a read from an older epoch is refused too, and answered after the sender catches up', async () => {
    const { a, b, bus, start, refusals } = await cluster();
    const oid = dataOid(asVid(8), 0);
    await a.gateway.write(oid, 0, object(3), true);
    await b.store.remove(oid); // only A can serve it now
    bus.pause(b.config.self.id);
    await start(3);
    let answered = false;
    const read = b.gateway.read(oid, 0, 4).then((data) => {
      answered = true;
      return data;
    });
    await until('the refusal', () => refusals.includes('OLD_EPOCH'));
    expect(answered).toBe(false);
    bus.resume(b.config.self.id);
    expect((await read).equals(Buffer.alloc(4, 3))).toBe(true);
  });
});
