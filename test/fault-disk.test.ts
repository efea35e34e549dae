// The fault-injecting disk: rules, probability under a seed, latency on a simulated clock.
import { describe, expect, test } from 'vitest';
import { FaultDisk } from '../src/io/fault-disk.js';
import { MemoryDisk } from '../src/io/memory-disk.js';
import { seededRandom } from '../src/io/random.js';
import { Scheduler } from '../src/sim/scheduler.js';

function setup(seed = 1) {
  const clock = new Scheduler();
  const inner = new MemoryDisk();
  const disk = new FaultDisk(inner, { clock, random: seededRandom(seed) });
  return { clock, inner, disk };
}

describe('fault disk', () => {
  test('a rule fails matching operations with its code and the inner disk never sees them', async () => {
    const { inner, disk } = setup();
    await disk.mkdirs('/s/obj');
    disk.addRule({ operations: ['write'], pathIncludes: '/obj/', code: 'EIO', times: 2 });
    const file = await disk.open('/s/obj/a', 'create');
    await expect(file.write(Buffer.from('x'), 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(file.write(Buffer.from('x'), 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(await inner.usedBytes('/s/obj')).toBe(0);
    await file.write(Buffer.from('x'), 0); // the rule retired after two faults
    expect(await inner.usedBytes('/s/obj')).toBe(4096);
    await file.close();
    expect(disk.injected.get('write')).toBe(2);
  });

  test('ENOSPC by rule on datasync and rename; clearRules heals', async () => {
    const { disk } = setup();
    await disk.mkdirs('/d');
    disk.setRules([{ operations: ['datasync', 'rename'], code: 'ENOSPC' }]);
    const file = await disk.open('/d/t', 'create');
    await file.write(Buffer.from('x'), 0);
    await expect(file.datasync()).rejects.toMatchObject({ code: 'ENOSPC' });
    await expect(disk.rename('/d/t', '/d/u')).rejects.toMatchObject({ code: 'ENOSPC' });
    disk.clearRules();
    await file.datasync();
    await disk.rename('/d/t', '/d/u');
    await file.close();
    expect(await disk.list('/d')).toEqual(['u']);
  });

  test('faults by probability follow the seed: the same seed fails the same operations', async () => {
    async function pattern(seed: number): Promise<string> {
      const { disk } = setup(seed);
      await disk.mkdirs('/d');
      disk.addRule({ operations: ['exists'], probability: 0.3, code: 'EIO' });
      let out = '';
      for (let i = 0; i < 200; i++) out += await disk.exists('/d').then(() => '.', () => 'x');
      return out;
    }
    const first = await pattern(7);
    expect(await pattern(7)).toBe(first);
    expect(await pattern(8)).not.toBe(first);
    const failures = [...first].filter((c) => c === 'x').length;
    expect(failures).toBeGreaterThan(30);
    expect(failures).toBeLessThan(90);
  });

  test('latency is spent on the clock: operations complete only as simulated time passes', async () => {
    const { clock, disk } = setup();
    disk.latency = { minMs: 5, maxMs: 10 };
    const done = disk.mkdirs('/d').then(() => clock.nowMs());
    const startMs = clock.nowMs();
    const result = await clock.settle(done, 1000);
    expect(result.done).toBe(true);
    const tookMs = (result as { value: number }).value - startMs;
    expect(tookMs).toBeGreaterThanOrEqual(5);
    expect(tookMs).toBeLessThan(10);
  });
});
