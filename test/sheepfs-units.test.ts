// Parts of sheepfs testable without a mount: path kinds, control-file lines, the SdError -> errno
// table, write-behind and read-ahead over a fake volume.
import { describe, expect, it } from 'vitest';
import { SdError, sdError } from '../src/engine/errors.js';
import type { Volume } from '../src/engine/volume.js';
import { parseControlLine, parseControlWrite } from '../src/fs/control.js';
import { errno, fuseErrnoOf, refuse } from '../src/fs/errno.js';
import { ReadAhead, readAheadObjects } from '../src/fs/read-ahead.js';
import { fixedChildrenOf, parsePath } from '../src/fs/tree.js';
import { WriteBehind } from '../src/fs/write-behind.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

describe('tree', () => {
  it('names every fixed file and directory', () => {
    expect(parsePath('/')).toEqual({ kind: 'directory', path: '/' });
    expect(parsePath('/vdi/list')).toEqual({ kind: 'info', source: 'vdiList' });
    expect(parsePath('/cluster/info')).toEqual({ kind: 'info', source: 'clusterInfo' });
    expect(parsePath('/vdi/rollback')).toEqual({ kind: 'control', command: 'rollback' });
    expect(parsePath('/volume')).toEqual({ kind: 'volumeDirectory' });
    expect(parsePath('/volume/Alice:snap1')).toEqual({ kind: 'volume', spec: 'Alice:snap1' });
    expect(parsePath('/vdi/nosuch')).toEqual({ kind: 'absent' });
    expect(parsePath('/volume/a/b')).toEqual({ kind: 'absent' });
    expect(parsePath('/cluster/info/x')).toEqual({ kind: 'absent' });
  });

  it('lists directories from the table', () => {
    expect([...fixedChildrenOf('/')].sort()).toEqual(['cluster', 'node', 'vdi', 'volume']);
    expect([...fixedChildrenOf('/node')].sort()).toEqual(['info', 'list']);
    expect([...fixedChildrenOf('/vdi')].sort()).toEqual([
      'clone',
      'delete',
      'list',
      'mount',
      'rollback',
      'snapshot',
      'unmount',
    ]);
    expect(fixedChildrenOf('/volume')).toEqual([]);
  });
});

describe('control lines', () => {
  it('parses each command', () => {
    expect(parseControlLine('mount', 'Alice')).toEqual({
      ok: true,
      value: { command: 'mount', spec: 'Alice' },
    });
    expect(parseControlLine('mount', ' Alice:snap1 ')).toEqual({
      ok: true,
      value: { command: 'mount', spec: 'Alice:snap1' },
    });
    expect(parseControlLine('snapshot', 'Alice')).toEqual({
      ok: true,
      value: { command: 'snapshot', name: 'Alice', tag: undefined },
    });
    expect(parseControlLine('snapshot', 'Alice:t1')).toEqual({
      ok: true,
      value: { command: 'snapshot', name: 'Alice', tag: 't1' },
    });
    expect(parseControlLine('rollback', 'Alice:t1')).toEqual({
      ok: true,
      value: { command: 'rollback', name: 'Alice', tag: 't1' },
    });
    expect(parseControlLine('delete', 'Alice')).toEqual({
      ok: true,
      value: { command: 'delete', name: 'Alice', tag: undefined },
    });
    expect(parseControlLine('clone', 'Alice:t1 Bob')).toEqual({
      ok: true,
      value: { command: 'clone', source: 'Alice', tag: 't1', target: 'Bob' },
    });
  });

  it('takes the whole line as the name: names may hold spaces', () => {
    expect(parseControlLine('mount', 'my disk')).toEqual({ ok: true, value: { command: 'mount', spec: 'my disk' } });
    expect(parseControlLine('mount', '\tmy  disk:2 ')).toEqual({ ok: true, value: { command: 'mount', spec: 'my  disk:2' } });
    expect(parseControlLine('unmount', 'my disk:snap 1'.replace(' 1', ''))).toEqual({ ok: true, value: { command: 'unmount', spec: 'my disk:snap' } });
    expect(parseControlLine('snapshot', 'my disk')).toEqual({ ok: true, value: { command: 'snapshot', name: 'my disk', tag: undefined } });
    expect(parseControlLine('snapshot', 'my disk:before upgrade').ok).toBe(false); // a tag has no spaces
    expect(parseControlLine('rollback', 'my disk:t1')).toEqual({ ok: true, value: { command: 'rollback', name: 'my disk', tag: 't1' } });
    expect(parseControlLine('delete', 'my disk:3')).toEqual({ ok: true, value: { command: 'delete', name: 'my disk', tag: '3' } });
    expect(parseControlLine('clone', 'my disk:t1   new  disk ')).toEqual({
      ok: true,
      value: { command: 'clone', source: 'my disk', tag: 't1', target: 'new  disk' },
    });
  });

  it.each([
    ['mount', ''],
    ['mount', '   '],
    ['mount', 'a:b:c'],
    ['mount', ':tag'],
    ['mount', 'a:'],
    ['mount', 'a\u0001b'],
    ['mount', 'x'.repeat(256)],
    ['mount', 'x'.repeat(2000)],
    ['rollback', 'Alice'],
    ['snapshot', 'a:b:c'],
    ['snapshot', 'a:b t'],
    ['delete', 'a/b'],
    ['clone', 'Alice Bob'],
    ['clone', 'Alice:t1'],
    ['clone', 'Alice: Bob'],
    ['clone', 'Alice:t1 B/b'],
    ['clone', ':t1 Bob'],
  ] as const)('refuses %s %j with INVALID_ARGUMENT', (command, line) => {
    const parsed = parseControlLine(command, line);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error.code).toBe('INVALID_ARGUMENT');
  });

  it('takes several lines per write, all or nothing', () => {
    const two = parseControlWrite('mount', bytes('a\nb\n'));
    expect(two.ok && two.value.map((request) => request.command)).toEqual(['mount', 'mount']);
    expect(parseControlWrite('mount', bytes('a\n\nb\n')).ok).toBe(false);
    expect(parseControlWrite('mount', bytes('Alice')).ok).toBe(true);
    expect(parseControlWrite('mount', bytes('Alice\r\n')).ok).toBe(true);
    expect(parseControlWrite('mount', bytes('\n')).ok).toBe(false);
    expect(parseControlWrite('mount', Buffer.from([0xff, 0xfe, 0x0a])).ok).toBe(false);
    expect(parseControlWrite('mount', bytes('a\n'.repeat(17))).ok).toBe(false);
  });
});

describe('errno mapping', () => {
  it.each([
    ['NO_VDI', errno.ENOENT],
    ['NO_TAG', errno.ENOENT],
    ['INVALID_ARGUMENT', errno.EINVAL],
    ['READ_ONLY', errno.EROFS],
    ['OUT_OF_RANGE', errno.EFBIG],
    ['NO_SPACE', errno.ENOSPC],
    ['NETWORK', errno.EIO],
    ['IO', errno.EIO],
  ] as const)('%s -> %i', (code, expected) => {
    expect(fuseErrnoOf(sdError(code, 'x')).fuseErrno).toBe(-expected);
  });

  it('logs cluster failures and programming errors, not user errors', () => {
    expect(fuseErrnoOf(sdError('NETWORK', 'x')).shouldLog).toBe(true);
    expect(fuseErrnoOf(new TypeError('bug'))).toMatchObject({ name: 'EIO', shouldLog: true });
    expect(fuseErrnoOf(sdError('NO_VDI', 'x')).shouldLog).toBe(false);
    expect(fuseErrnoOf(refuse('EPERM', 'x'))).toMatchObject({
      fuseErrno: -errno.EPERM,
      shouldLog: false,
    });
  });
});

// ---- write-behind and read-ahead over a fake volume that records its calls ----


const objectBytes = 1024;

class FakeVolume {
  readonly bytes = Buffer.alloc(16 * objectBytes);
  readonly calls: string[] = [];
  delayMs = (_offset: number): number => 0;
  failWrites = false;
  readonly info = {
    name: 'v', tag: '', snapId: 1, vid: 1, sizeBytes: 16 * objectBytes, objectSizeBytes: objectBytes, readOnly: false,
  };
  async read(offset: number, length: number): Promise<Buffer> {
    this.calls.push(`read ${offset}+${length}`);
    await new Promise((resolve) => setTimeout(resolve, this.delayMs(offset)));
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async write(offset: number, data: Buffer): Promise<void> {
    this.calls.push(`write ${offset}+${data.length}`);
    const copy = Buffer.from(data);
    await new Promise((resolve) => setTimeout(resolve, this.delayMs(offset)));
    if (this.failWrites) throw new SdError('IO', 'disk on fire');
    copy.copy(this.bytes, offset);
  }
}

const asVolume = (fake: FakeVolume): Volume => fake as unknown as Volume;

describe('write-behind', () => {
  it('coalesces sequential writes into one write per object and lands them on drain', async () => {
    const fake = new FakeVolume();
    const writer = new WriteBehind(() => asVolume(fake), 1 << 20);
    const data = Buffer.from(Array.from({ length: 2 * objectBytes }, (_, i) => i % 251));
    for (let at = 0; at < data.length; at += 128) await writer.write(at, data.subarray(at, at + 128));
    await writer.write(5000, Buffer.from('tail'));
    await writer.drain();
    expect(fake.calls).toEqual([`write 0+${objectBytes}`, `write ${objectBytes}+${objectBytes}`, 'write 5000+4']);
    expect(fake.bytes.subarray(0, data.length)).toEqual(data);
    expect(fake.bytes.subarray(5000, 5004).toString()).toBe('tail');
    expect(writer.idle).toBe(true);
  });

  it('lands overlapping writes in the order they were made', async () => {
    const fake = new FakeVolume();
    let first = true;
    fake.delayMs = () => (first ? ((first = false), 50) : 0);
    const writer = new WriteBehind(() => asVolume(fake), 1 << 20);
    await writer.write(10, Buffer.from('aaaa'));
    await writer.write(0, Buffer.from('bbbbbbbbbbbb')); // not contiguous: sends 'aaaa' first
    await writer.drain();
    expect(fake.bytes.subarray(0, 14).toString()).toBe('bbbbbbbbbbbbaa');
  });

  it('reports a failed write once, at the next write or drain', async () => {
    const fake = new FakeVolume();
    fake.failWrites = true;
    const writer = new WriteBehind(() => asVolume(fake), 1 << 20);
    await writer.write(0, Buffer.from('x'));
    await writer.settle(0, 1); // never throws
    await expect(writer.drain()).rejects.toThrow('disk on fire');
    await writer.drain();
  });
});

describe('read-ahead', () => {
  it('fetches whole objects for sequential reads and forgets them on invalidate', async () => {
    const fake = new FakeVolume();
    fake.bytes.fill(7);
    const reader = new ReadAhead(() => asVolume(fake), async () => undefined);
    expect(await reader.read(0, 100)).toEqual(Buffer.alloc(100, 7)); // not known sequential: direct
    expect(await reader.read(100, 100)).toEqual(Buffer.alloc(100, 7)); // sequential: object 0 fetched
    expect(await reader.read(200, 100)).toEqual(Buffer.alloc(100, 7)); // from memory
    const ahead = Array.from({ length: readAheadObjects }, (_, i) => `read ${(i + 1) * objectBytes}+${objectBytes}`);
    expect(fake.calls).toEqual(['read 0+100', `read 0+${objectBytes}`, ...ahead]);
    fake.bytes.fill(9, 300, 400);
    reader.invalidate();
    expect(await reader.read(300, 100)).toEqual(Buffer.alloc(100, 9));
  });
});
