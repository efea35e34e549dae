// The writer's lock keeper (src/volume/lock-keeper.ts) against a fake lock table: a write the
// cluster refuses for a lost lock is sent again once the lock is re-taken; lost to another writer,
// every later write is refused. In memory; the real-process check is in dog-rest.test.ts.
import { describe, expect, it } from 'vitest';
import { SdError } from '../src/engine/errors.js';
import type { ObjectIo } from '../src/engine/object-io.js';
import type { Oid } from '../src/engine/oid.js';
import type { VdiLock } from '../src/engine/vdi-locks.js';
import { LockKeeper } from '../src/volume/lock-keeper.js';

function world() {
  const table = new Set<string>();
  let other = false;
  let takes = 0;
  const writes: Array<{ lock: string | undefined }> = [];
  const lock = (holder: string): VdiLock => ({ name: 'vm', holder, node: 'n', client: 'c', sinceSec: 0, shared: false });
  const port = {
    take: async (holder?: string) => {
      takes += 1;
      if (other) throw new SdError('VDI_LOCKED', 'VDI vm is locked by nbd x through y');
      const taken = holder ?? `h${takes}`;
      table.add(taken);
      return lock(taken);
    },
    release: async (holder: string) => table.delete(holder),
  };
  const io: ObjectIo = {
    read: async () => Buffer.alloc(0),
    lookup: async () => {
      throw new Error('unused');
    },
    write: async (_oid, _offset, _data, _create, options) => {
      const held = options?.lock;
      if (held !== undefined && !table.has(held)) throw new SdError('LOCK_LOST', 'gone');
      writes.push({ lock: held });
    },
    remove: async (_oid, held) => {
      if (held !== undefined && !table.has(held)) throw new SdError('LOCK_LOST', 'gone');
    },
  };
  return { table, port, io, writes, takes: () => takes, otherTakes: () => void (other = true) };
}

const oid = 1n as unknown as Oid;

describe('LockKeeper', () => {
  it('names its lock in every write, and re-takes it once for writes that found it gone at once', async () => {
    const w = world();
    const keeper = await LockKeeper.take(w.port);
    const io = keeper.io(w.io);
    await io.write(oid, 0, Buffer.alloc(1), false);
    expect(w.writes).toEqual([{ lock: 'h1' }]);
    w.table.clear(); // every sheep restarted
    await Promise.all([io.write(oid, 0, Buffer.alloc(1), false), io.write(oid, 1, Buffer.alloc(1), false), io.remove(oid)]);
    expect(w.takes()).toBe(2);
    expect([...w.table]).toEqual(['h1']);
    expect(w.writes.map((x) => x.lock)).toEqual(['h1', 'h1', 'h1']);
  });

  it('refuses every write read-only once another writer took the VDI', async () => {
    const w = world();
    const io = (await LockKeeper.take(w.port)).io(w.io);
    w.table.clear();
    w.otherTakes();
    await expect(io.write(oid, 0, Buffer.alloc(1), false)).rejects.toMatchObject({ code: 'READ_ONLY', message: expect.stringMatching(/^vm lost its writer's lock .*: VDI vm is locked by nbd x through y$/) });
    await expect(io.remove(oid)).rejects.toMatchObject({ code: 'READ_ONLY' });
    expect(w.takes()).toBe(2); // refused for good: not asked again
    expect(w.writes).toEqual([]);
  });
});
