// Pure parts of sheepfs: path kinds, control-file lines, the SdError -> errno table.
import { describe, expect, it } from 'vitest';
import { sdError } from '../src/engine/errors.js';
import { parseControlLine, parseControlWrite } from '../src/fs/control.js';
import { errno, fuseErrnoOf, refuse } from '../src/fs/errno.js';
import { fixedChildrenOf, parsePath } from '../src/fs/tree.js';

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
    expect(parseControlLine('snapshot', 'Alice\tt1')).toEqual({
      ok: true,
      value: { command: 'snapshot', name: 'Alice', tag: 't1' },
    });
    expect(parseControlLine('rollback', 'Alice t1')).toEqual({
      ok: true,
      value: { command: 'rollback', name: 'Alice', tag: 't1' },
    });
    expect(parseControlLine('delete', 'Alice')).toEqual({
      ok: true,
      value: { command: 'delete', name: 'Alice', tag: undefined },
    });
  });

  it.each([
    ['mount', ''],
    ['mount', '   '],
    ['mount', 'a b'],
    ['mount', 'a:b:c'],
    ['mount', ':tag'],
    ['mount', 'a:'],
    ['mount', 'a\u0001b'],
    ['mount', 'x'.repeat(256)],
    ['mount', 'x'.repeat(2000)],
    ['rollback', 'Alice'],
    ['snapshot', 'a b c'],
    ['snapshot', 'a:b t'],
    ['delete', 'a/b'],
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
