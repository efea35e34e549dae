// The simulated clock: event order, microtasks drained between events, cancelled timers, real
// timers trapped.
import { describe, expect, test } from 'vitest';
import { Scheduler, simEpochMs } from '../src/sim/scheduler.js';

describe('scheduler', () => {
  test('fires events in time order, ties in scheduling order, moving the clock to each', async () => {
    const clock = new Scheduler();
    const seen: string[] = [];
    clock.after(20, () => seen.push(`b@${clock.nowMs() - simEpochMs}`));
    clock.after(10, () => seen.push(`a@${clock.nowMs() - simEpochMs}`));
    clock.after(20, () => seen.push(`c@${clock.nowMs() - simEpochMs}`));
    const cancelled = clock.after(15, () => seen.push('never'));
    cancelled.cancel();
    expect(await clock.run()).toBe('idle');
    expect(seen).toEqual(['a@10', 'b@20', 'c@20']);
  });

  test('the promise chains an event starts finish before the next event fires', async () => {
    const clock = new Scheduler();
    const seen: string[] = [];
    clock.after(1, () => {
      void (async () => {
        for (let i = 0; i < 50; i++) await Promise.resolve();
        process.nextTick(() => seen.push('deep chain done'));
      })();
    });
    clock.after(1, () => seen.push('second event'));
    await clock.run();
    expect(seen).toEqual(['deep chain done', 'second event']);
  });

  test('every() repeats until cancelled; untilMs stops the clock at the limit', async () => {
    const clock = new Scheduler();
    let ticks = 0;
    const timer = clock.every(100, () => (ticks += 1));
    expect(await clock.runFor(1050)).toBe('time');
    expect(ticks).toBe(10);
    expect(clock.nowMs() - simEpochMs).toBe(1050);
    timer.cancel();
    expect(await clock.run()).toBe('idle');
    expect(ticks).toBe(10);
  });

  test('sleep resolves at its simulated time; settle runs until a promise settles', async () => {
    const clock = new Scheduler();
    const result = await clock.settle(
      (async () => {
        await clock.sleep(5000);
        return clock.nowMs() - simEpochMs;
      })(),
      60_000,
    );
    expect(result).toEqual({ done: true, value: 5000 });
    const never = await clock.settle(new Promise(() => undefined), 1000);
    expect(never).toEqual({ done: false });
  });

  test('a real timer started by project code during a run fails the run', async () => {
    const clock = new Scheduler();
    // Imported from src/ so that the trap sees a project frame as the caller.
    const { systemClock } = await import('../src/io/clock.js');
    clock.after(1, () => void systemClock.sleep(1));
    await expect(clock.run()).rejects.toThrow(/real timer was started under simulated time/);
  });

  test('a run that never reaches its goal within its event budget is reported stuck', async () => {
    const clock = new Scheduler();
    clock.every(1, () => undefined);
    await expect(clock.run({ until: () => false, eventsMax: 1000 })).rejects.toThrow(/stuck/);
  });
});
