import { describe, expect, test } from 'vitest';
import { asVid, dataOid } from '../src/engine/oid.js';
import { CopyWatch } from '../src/sheep/copy-watch.js';

const a = dataOid(asVid(1), 2);
const b = dataOid(asVid(1), 3);

describe('CopyWatch', () => {
  test('a replica write of the object after the watch began is seen; one of another object is not', async () => {
    const copies = new CopyWatch();
    const watch = copies.watch(a);
    expect(watch.written).toBe(false);
    await copies.writing(b, async () => undefined);
    expect(watch.written).toBe(false);
    await copies.writing(a, async () => undefined);
    expect(watch.written).toBe(true);
    watch.release();
  });

  test('a replica write still in the store when the watch begins counts as written', async () => {
    const copies = new CopyWatch();
    let finish!: () => void;
    const inStore = copies.writing(a, () => new Promise<void>((resolve) => (finish = resolve)));
    const during = copies.watch(a);
    expect(during.written).toBe(true);
    finish();
    await inStore;
    const after = copies.watch(a);
    expect(after.written).toBe(false);
    during.release();
    after.release();
  });

  test('a failed write still counts, and its in-flight mark goes', async () => {
    const copies = new CopyWatch();
    const watch = copies.watch(a);
    await expect(copies.writing(a, async () => Promise.reject(new Error('EIO')))).rejects.toThrow('EIO');
    expect(watch.written).toBe(true);
    watch.release();
    expect(copies.watch(a).written).toBe(false);
  });

  test('released watches are forgotten: nothing is kept for objects no longer copied', async () => {
    const copies = new CopyWatch();
    const first = copies.watch(a);
    const second = copies.watch(a);
    first.release();
    await copies.writing(a, async () => undefined);
    expect(first.written).toBe(false);
    expect(second.written).toBe(true);
    second.release();
    expect((copies as unknown as { watches: Map<unknown, unknown> }).watches.size).toBe(0);
  });
});
