// StreamReader on an in-process stream: exact reads across chunks, views without copies, and
// pausing the source when unread input piles up.
import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { StreamReader } from '../src/nbd/reader.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('StreamReader', () => {
  test('reads exactly across chunk boundaries and skips without holding data', async () => {
    const stream = new PassThrough();
    const reader = new StreamReader(stream, 1024);
    stream.write(Buffer.from('abc'));
    stream.write(Buffer.from('defgh'));
    expect((await reader.readExactly(4)).toString()).toBe('abcd');
    const pending = reader.readExactly(6);
    stream.write(Buffer.from('ijk'));
    expect((await pending).toString()).toBe('efghij');
    await reader.skip(1);
    stream.write(Buffer.from('lmn'));
    expect((await reader.readExactly(3)).toString()).toBe('lmn');
  });

  test('a read inside one chunk is a view of it, not a copy', async () => {
    const stream = new PassThrough();
    const reader = new StreamReader(stream, 1024);
    const chunk = Buffer.from('0123456789');
    stream.write(chunk);
    await tick();
    const view = await reader.readExactly(4);
    expect(view.buffer).toBe(chunk.buffer);
  });

  test('pauses the source above the limit and resumes when a read needs more', async () => {
    const stream = new PassThrough();
    const reader = new StreamReader(stream, 1000);
    stream.write(Buffer.alloc(1500));
    await tick();
    expect(stream.isPaused()).toBe(true);
    await reader.readExactly(600);
    expect(stream.isPaused()).toBe(false);
    const big = reader.readExactly(5000);
    stream.write(Buffer.alloc(5000));
    expect((await big).length).toBe(5000);
  });

  test('pending reads fail when the stream ends', async () => {
    const stream = new PassThrough();
    const reader = new StreamReader(stream, 1000);
    const pending = reader.readExactly(10);
    stream.end(Buffer.alloc(5));
    await expect(pending).rejects.toMatchObject({ code: 'NETWORK' });
  });
});
