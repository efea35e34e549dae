// Work retried with backoff until it is done (src/sheep/retry-loop.ts), on a manual clock.
import { describe, expect, test } from 'vitest';
import { RetryLoop } from '../src/sheep/retry-loop.js';
import { ManualClock } from './support/manual-clock.js';

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('RetryLoop', () => {
  test('attempts back off from the first wait to the longest while they fail, and stop once one is done', async () => {
    const clock = new ManualClock(0);
    const at: number[] = [];
    let failures = 5;
    const loop = new RetryLoop(clock, 1000, 5000, async () => {
      at.push(clock.nowMs());
      return failures-- <= 0;
    });
    loop.request();
    for (let i = 0; i < 40; i++) {
      await clock.advance(1000);
      await settle();
    }
    expect(at).toEqual([1000, 3000, 7000, 12000, 17000, 22000]);
    expect(clock.pending).toBe(0);
  });

  test('a request while an attempt runs brings another attempt after the first wait; a throw is a failure', async () => {
    const clock = new ManualClock(0);
    const at: number[] = [];
    let release!: () => void;
    let calls = 0;
    const loop = new RetryLoop(clock, 100, 1000, async () => {
      at.push(clock.nowMs());
      calls += 1;
      if (calls === 1) await new Promise<void>((resolve) => (release = resolve));
      if (calls === 2) throw new Error('disk full');
      return true;
    });
    loop.request();
    await clock.advance(100);
    await settle();
    loop.request();
    release();
    await settle();
    for (let i = 0; i < 10; i++) {
      await clock.advance(100);
      await settle();
    }
    expect(at).toEqual([100, 200, 400]);
  });

  test('stop cancels what is pending and later requests', async () => {
    const clock = new ManualClock(0);
    let calls = 0;
    const loop = new RetryLoop(clock, 100, 1000, async () => {
      calls += 1;
      return false;
    });
    loop.request();
    loop.stop();
    loop.request();
    await clock.advance(10_000);
    expect(calls).toBe(0);
    expect(clock.pending).toBe(0);
  });
});
