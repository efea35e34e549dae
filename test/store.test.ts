import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, test } from 'vitest';
import { asVid, dataOid, oidHex } from '../src/engine/oid.js';
import { systemClock } from '../src/io/clock.js';
import { nodeDisk } from '../src/io/disk.js';
import { checksumOf } from '../src/store/checksums.js';
import { ObjectStore } from '../src/store/object-store.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-store-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const objectBytes = 4 * 2 ** 20;
const oid = dataOid(asVid(0x7c2b25), 1);

describe('object store', () => {
  test('whole and range writes read back; a missing object is NO_OBJECT', async () => {
    const store = new ObjectStore({ dir: tempDir(), disk: nodeDisk, clock: systemClock });
    await store.open();
    await expect(store.read(oid, 0, 10)).rejects.toMatchObject({ code: 'NO_OBJECT' });
    const data = Buffer.alloc(objectBytes, 7);
    await store.writeWhole(oid, data, objectBytes);
    await store.writeRange(oid, 4000, Buffer.from('hello'), objectBytes);
    const back = await store.read(oid, 3998, 9);
    expect(back).toEqual(Buffer.from([7, 7, ...Buffer.from('hello'), 7, 7]));
    expect(await store.list()).toEqual([oid]);
  });

  test('a checksum is remembered until the object is written or removed, and never outlives a write it raced', async () => {
    const store = new ObjectStore({ dir: tempDir(), disk: nodeDisk, clock: systemClock });
    await store.open();
    const data = Buffer.alloc(objectBytes, 7);
    await store.writeWhole(oid, data, objectBytes);
    const whole = checksumOf(data);
    expect(await store.checksum(oid, objectBytes)).toBe(whole);
    await store.writeRange(oid, 10, Buffer.from('x'), objectBytes);
    const patched = Buffer.from(data);
    patched.write('x', 10);
    expect(await store.checksum(oid, objectBytes)).toBe(checksumOf(patched));
    // A sum computed while a write lands is returned to its caller but not kept.
    const racing = store.checksum(oid, objectBytes);
    const writing = store.writeWhole(oid, Buffer.alloc(objectBytes, 9), objectBytes);
    await Promise.all([racing, writing]);
    expect(await store.checksum(oid, objectBytes)).toBe(checksumOf(Buffer.alloc(objectBytes, 9)));
    await store.remove(oid);
    await expect(store.checksum(oid, objectBytes)).rejects.toMatchObject({ code: 'NO_OBJECT' });
  });

  test('thin: an object of zeros takes no blocks', async () => {
    const dir = tempDir();
    const store = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await store.open();
    await store.writeWhole(oid, Buffer.alloc(objectBytes), objectBytes);
    expect(fs.statSync(path.join(dir, oidHex(oid))).blocks * 512).toBeLessThanOrEqual(4096);
  });

  test('a record of the earlier one-file journal that survived a crash is replayed; a torn one is dropped', async () => {
    const dir = tempDir();
    const store = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await store.open();
    await store.writeWhole(oid, Buffer.alloc(objectBytes, 1), objectBytes);
    // Simulate a crash after the journal record was synced but before it was applied.
    const payload = Buffer.from('replayed!');
    const header = Buffer.alloc(32);
    header.writeUInt32BE(0x53444a31, 0);
    header.writeBigUInt64BE(oid, 4);
    header.writeUInt32BE(100, 12);
    header.writeUInt32BE(payload.length, 16);
    header.writeUInt32BE(objectBytes, 20);
    header.writeUInt32BE(crc32(payload), 24);
    header.writeUInt32BE(crc32(header.subarray(0, 28)), 28);
    fs.writeFileSync(path.join(dir, '.journal', '000000000000001-1-0'), Buffer.concat([header, payload]));
    // And a torn record: its data does not match its checksum.
    const torn = Buffer.concat([header, Buffer.from('torn!!!!!')]);
    torn.writeUInt32BE(200, 12);
    torn.writeUInt32BE(crc32(torn.subarray(0, 28)), 28);
    fs.writeFileSync(path.join(dir, '.journal', '000000000000002-1-1'), torn);
    const reopened = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    expect(await reopened.open()).toMatchObject({ replayed: 1, dropped: 1 });
    expect((await reopened.read(oid, 100, 9)).toString()).toBe('replayed!');
    expect(await reopened.read(oid, 200, 9)).toEqual(Buffer.alloc(9, 1));
    expect(fs.readdirSync(path.join(dir, '.journal')).filter((n) => !n.startsWith('log.'))).toEqual([]);
  });
});

describe('write-ahead log', () => {
  const oidA = dataOid(asVid(0x10), 0);
  const oidB = dataOid(asVid(0x10), 1);
  const logFiles = (dir: string) => fs.readdirSync(path.join(dir, '.journal')).filter((n) => n.startsWith('log.'));

  test('logged ranges that never reached the object are replayed; superseded ones are not', async () => {
    const { encodeRecord } = await import('../src/store/journal.js');
    const dir = tempDir();
    const store = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await store.open();
    await store.writeWhole(oidA, Buffer.alloc(objectBytes, 1), objectBytes);
    await store.writeWhole(oidB, Buffer.alloc(objectBytes, 1), objectBytes);
    // A crash after the log had these records but before they were applied in place:
    const log = Buffer.concat([
      encodeRecord({ kind: 'range', oid: oidA, offsetBytes: 10, sizeBytes: objectBytes, data: Buffer.from('old') }, 99),
      encodeRecord({ kind: 'range', oid: oidB, offsetBytes: 10, sizeBytes: objectBytes, data: Buffer.from('stale') }, 99),
      encodeRecord({ kind: 'supersede', oid: oidB }, 99),
      encodeRecord({ kind: 'range', oid: oidA, offsetBytes: 11, sizeBytes: objectBytes, data: Buffer.from('new') }, 99),
    ]);
    const torn = encodeRecord({ kind: 'range', oid: oidA, offsetBytes: 20, sizeBytes: objectBytes, data: Buffer.from('torn') }, 99);
    fs.writeFileSync(path.join(dir, '.journal', 'log.0000000099'), Buffer.concat([log, torn.subarray(0, torn.length - 2)]));
    const reopened = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    expect(await reopened.open()).toMatchObject({ replayed: 2, dropped: 1 });
    expect((await reopened.read(oidA, 10, 4)).toString()).toBe('onew');
    expect(await reopened.read(oidA, 20, 4)).toEqual(Buffer.alloc(4, 1));
    expect(await reopened.read(oidB, 10, 5)).toEqual(Buffer.alloc(5, 1));
    expect(logFiles(dir)).toHaveLength(1); // the replayed log is gone, a fresh one begun
  });

  test('a range write is in the log before it is acknowledged; a whole write supersedes it', async () => {
    const { decodeRecords, recordsToReplay } = await import('../src/store/journal.js');
    const dir = tempDir();
    const store = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await store.open();
    await store.writeRange(oidA, 100, Buffer.from('logged'), objectBytes);
    const current = () => {
      const name = logFiles(dir)[0]!;
      return decodeRecords(fs.readFileSync(path.join(dir, '.journal', name)), Number(name.slice(4))).records;
    };
    expect(recordsToReplay(current()).map((r) => r.data.toString())).toEqual(['logged']);
    await store.writeWhole(oidA, Buffer.alloc(objectBytes, 2), objectBytes);
    expect(recordsToReplay(current())).toEqual([]);
    expect((await store.read(oidA, 100, 6))).toEqual(Buffer.alloc(6, 2));
    await store.writeRange(oidB, 0, Buffer.from('x'), objectBytes);
    await store.remove(oidB);
    expect(recordsToReplay(current())).toEqual([]); // a removed object is never brought back
  });

  test('a failed append (ENOSPC) fails that write only: the journal goes on in a new generation', async () => {
    const { FaultDisk } = await import('../src/io/fault-disk.js');
    const { seededRandom } = await import('../src/io/random.js');
    const dir = tempDir();
    const disk = new FaultDisk(nodeDisk, { clock: systemClock, random: seededRandom(1) });
    const store = new ObjectStore({ dir, disk, clock: systemClock });
    await store.open();
    await store.writeRange(oidA, 0, Buffer.from('before'), objectBytes);
    disk.addRule({ operations: ['write'], pathIncludes: '/.journal/', times: 1, code: 'ENOSPC' });
    await expect(store.writeRange(oidA, 10, Buffer.from('failed'), objectBytes)).rejects.toMatchObject({ code: 'ENOSPC' });
    await store.writeRange(oidA, 20, Buffer.from('after'), objectBytes);
    await store.writeRange(oidB, 0, Buffer.from('other'), objectBytes);
    expect((await store.read(oidA, 20, 5)).toString()).toBe('after');
    // What was acknowledged is durable: a crash now (no close) replays it from the new generation.
    const reopened = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await reopened.open();
    expect((await reopened.read(oidA, 0, 6)).toString()).toBe('before');
    expect(await reopened.read(oidA, 10, 6)).toEqual(Buffer.alloc(6));
    expect((await reopened.read(oidA, 20, 5)).toString()).toBe('after');
    expect((await reopened.read(oidB, 0, 5)).toString()).toBe('other');
  });

  test('a reused log replays only its own generation', async () => {
    const { encodeRecord, decodeRecords } = await import('../src/store/journal.js');
    const newer = encodeRecord({ kind: 'range', oid: oidA, offsetBytes: 0, sizeBytes: objectBytes, data: Buffer.from('n') }, 8);
    const older = encodeRecord({ kind: 'range', oid: oidB, offsetBytes: 0, sizeBytes: objectBytes, data: Buffer.from('o') }, 7);
    const decoded = decodeRecords(Buffer.concat([newer, older, Buffer.alloc(100)]), 8);
    expect(decoded.records).toHaveLength(1);
    expect(decoded.tornBytes).toBe(0);
    expect(decodeRecords(Buffer.concat([newer, Buffer.from('garbage!'), Buffer.alloc(100)]), 8).tornBytes).toBeGreaterThan(0);
  });

  test('past the log size a checkpoint reuses the log; everything reads back after a restart', async () => {
    const dir = tempDir();
    const store = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await store.open();
    const pieces = Array.from({ length: 24 }, (_, i) => Buffer.alloc(2 ** 20, i + 1));
    for (const [i, piece] of pieces.entries()) await store.writeRange(dataOid(asVid(0x30), i % 8), (i >> 3) * 2 ** 20, piece, objectBytes);
    await store.close();
    expect(logFiles(dir)).toHaveLength(1);
    expect(Number(logFiles(dir)[0]!.slice(4))).toBeGreaterThan(1); // a later generation
    const reopened = new ObjectStore({ dir, disk: nodeDisk, clock: systemClock });
    await reopened.open();
    for (const [i, piece] of pieces.entries()) {
      expect((await reopened.read(dataOid(asVid(0x30), i % 8), (i >> 3) * 2 ** 20, 2 ** 20)).equals(piece)).toBe(true);
    }
    await reopened.close();
  });

  test('many concurrent range writes share group commits and all read back', async () => {
    const store = new ObjectStore({ dir: tempDir(), disk: nodeDisk, clock: systemClock });
    await store.open();
    await Promise.all(
      Array.from({ length: 64 }, (_, i) => store.writeRange(dataOid(asVid(0x20), i % 8), (i >> 3) * 4096, Buffer.alloc(4096, i), objectBytes)),
    );
    for (let i = 0; i < 64; i++) {
      expect(await store.read(dataOid(asVid(0x20), i % 8), (i >> 3) * 4096, 4096)).toEqual(Buffer.alloc(4096, i));
    }
  });
});
