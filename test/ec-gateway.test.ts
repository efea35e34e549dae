// The erasure-coded write against crashes, in process: strips live in a map, and a "crash"
// stops a write after its first k strip operations (each staged write, commit or rewrite), for
// every k. Whatever k, and after a second write cut off the same way, a read of the object returns
// the whole of one write that was made, never a mix and never an error.
import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeStripHeader, isStagedOid, committedOid, stagedOid } from '../src/engine/ec-layout.js';
import { SdError } from '../src/engine/errors.js';
import { asVid, dataOid, type Oid } from '../src/engine/oid.js';
import { EcGateway, type StripIo } from '../src/sheep/ec-gateway.js';
import type { Placement } from '../src/sheep/placement.js';
import type { Clock } from '../src/io/clock.js';

const objectBytes = 1 << 20;
const oid = dataOid(asVid(7), 0);

class MemoryStrips implements StripIo {
  readonly files = new Map<Oid, Buffer>();
  /** Operations left before the crash; Infinity: none. */
  budget = Infinity;

  private spend(): void {
    if (this.budget <= 0) throw new SdError('NETWORK', 'crashed');
    this.budget -= 1;
  }

  async read(strip: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const file = this.files.get(strip);
    if (!file) throw new SdError('NO_OBJECT', 'no object');
    return Buffer.from(file.subarray(offsetBytes, offsetBytes + lengthBytes));
  }

  async write(strip: Oid, offsetBytes: number, data: Buffer): Promise<void> {
    this.spend();
    expect(offsetBytes).toBe(0);
    this.files.set(strip, Buffer.from(data));
  }

  async commitStrip(strip: Oid, generation: bigint): Promise<void> {
    this.spend();
    const staged = this.files.get(stagedOid(strip));
    if (!staged || decodeStripHeader(staged)?.generation !== generation) throw new SdError('NO_OBJECT', 'nothing staged');
    this.files.set(strip, staged);
    this.files.delete(stagedOid(strip));
  }
}

function gateway(strips: MemoryStrips, start: number): EcGateway {
  const placement = { ecPolicy: () => ({ data: 4, parity: 2 }), objectSizeBytes: () => objectBytes } as unknown as Placement;
  let now = start;
  const clock = { nowMs: () => (now += 1) } as unknown as Clock;
  return new EcGateway(strips, placement, { config: undefined, epoch: 1, ring: () => ({ zoneCount: 6 }) } as never, clock);
}

async function cutOff(strips: MemoryStrips, at: number, data: Buffer, start: number, offsetBytes = 0): Promise<void> {
  strips.budget = at;
  await gateway(strips, start).write(oid, offsetBytes, data, true).catch((error: unknown) => {
    if (!(error instanceof SdError) || error.message !== 'crashed') throw error;
  });
  strips.budget = Infinity;
}

describe('an erasure-coded write cut off at any step', () => {
  const v1 = crypto.randomBytes(objectBytes);
  const v2 = crypto.randomBytes(objectBytes);
  const v3 = crypto.randomBytes(objectBytes);

  it('a whole write is 6 staged writes and 6 commits, and leaves nothing staged', async () => {
    const strips = new MemoryStrips();
    await gateway(strips, 1000).write(oid, 0, v1, true);
    expect([...strips.files.keys()].filter(isStagedOid)).toEqual([]);
    expect(strips.files.size).toBe(6);
    expect((await gateway(strips, 2000).read(oid, 0, objectBytes)).equals(v1)).toBe(true);
  });

  it('reads the old or the new object whole, for every cut, also after a second cut-off write', async () => {
    for (let first = 0; first <= 12; first++) {
      for (const second of [0, 3, 6, 8, 12, Infinity]) {
        const strips = new MemoryStrips();
        await gateway(strips, 1000).write(oid, 0, v1, true);
        await cutOff(strips, first, v2, 2000);
        const afterFirst = await gateway(strips, 3000).read(oid, 0, objectBytes);
        expect(afterFirst.equals(v1) || afterFirst.equals(v2), `cut at ${first}`).toBe(true);
        // The next write finishes what the cut one left half committed before it stages.
        await cutOff(strips, second, v3, 4000);
        const afterSecond = await gateway(strips, 5000).read(oid, 0, objectBytes);
        const which = [v1, v2, v3].findIndex((v) => v.equals(afterSecond));
        expect(which, `cut at ${first}, then at ${second}`).toBeGreaterThanOrEqual(0);
        if (second === Infinity) expect(which, 'a finished write is what reads return').toBe(2);
        // A range read returns that range of one write whole (after a cut commit, strips not yet
        // committed keep the older write's range until the stripe is next written or checked).
        const range = await gateway(strips, 6000).read(oid, 300_000, 5000);
        const rangeOf = [v1, v2, v3].findIndex((v) => v.subarray(300_000, 305_000).equals(range));
        expect(rangeOf, `range after cuts at ${first} and ${second}`).toBeGreaterThanOrEqual(0);
        if (second === Infinity) expect(rangeOf).toBe(2);
      }
    }
  });

  it('settling a stripe cut off while committing makes every range read the newer write', async () => {
    for (let at = 7; at < 12; at++) {
      const strips = new MemoryStrips();
      await gateway(strips, 1000).write(oid, 0, v1, true);
      await cutOff(strips, at, v2, 2000);
      await gateway(strips, 3000).settle(oid);
      for (const offset of [0, 300_000, 600_000, objectBytes - 5000]) {
        const range = await gateway(strips, 4000).read(oid, offset, 5000);
        expect(range.equals(v2.subarray(offset, offset + 5000)), `cut at ${at}, offset ${offset}`).toBe(true);
      }
    }
  });

  it('a first write cut off at any step leaves a hole or the whole write', async () => {
    for (let at = 0; at < 12; at++) {
      const strips = new MemoryStrips();
      await cutOff(strips, at, v1, 1000);
      const read = await gateway(strips, 2000).read(oid, 0, objectBytes).catch((error: SdError) => error.code);
      expect(read === 'NO_OBJECT' || (read instanceof Buffer && read.equals(v1)), `cut at ${at}: ${String(read).slice(0, 40)}`).toBe(true);
    }
  });

  it('a partial write cut off at any step, after a whole one cut off: the object before or after it', async () => {
    const patch = crypto.randomBytes(300_000);
    for (let first = 0; first <= 12; first += 2) {
      for (const second of [0, 4, 7, 10, Infinity]) {
        const strips = new MemoryStrips();
        await gateway(strips, 1000).write(oid, 0, v1, true);
        await cutOff(strips, first, v2, 2000);
        const before = await gateway(strips, 3000).read(oid, 0, objectBytes);
        const after = Buffer.from(before);
        patch.copy(after, 100_000);
        await cutOff(strips, second, patch, 4000, 100_000);
        const now = await gateway(strips, 5000).read(oid, 0, objectBytes);
        expect(now.equals(before) || now.equals(after), `cuts at ${first} and ${second}`).toBe(true);
        if (second === Infinity) expect(now.equals(after)).toBe(true);
      }
    }
  });

  it('a partial write patches the stripe it reads; with two strips gone the object still reads', async () => {
    const strips = new MemoryStrips();
    const ec = gateway(strips, 1000);
    await ec.write(oid, 0, v1, true);
    const patch = crypto.randomBytes(3000);
    await ec.write(oid, 262_000, patch, false);
    const expected = Buffer.from(v1);
    patch.copy(expected, 262_000);
    for (const strip of [...strips.files.keys()].filter((s) => !isStagedOid(s)).slice(1, 3)) strips.files.delete(committedOid(strip));
    expect((await ec.read(oid, 0, objectBytes)).equals(expected)).toBe(true);
    expect((await ec.read(oid, 261_000, 5000)).equals(expected.subarray(261_000, 266_000))).toBe(true);
  });
});
