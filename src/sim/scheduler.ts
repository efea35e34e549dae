// A deterministic discrete-event scheduler: the simulator's Clock. Time only moves when the
// scheduler takes the next event from its queue, ordered by (timeMs, seq); between two events
// every microtask and nextTick the previous one caused runs to completion, so a run is a pure
// function of the code and the seed. Real timers started by the code under simulation would break
// that: while a run is in progress they are trapped and reported (see `realTimerTrap`).
import { SdError } from '../engine/errors.js';
import type { Clock, Timer } from '../io/clock.js';

/** Simulated time starts here (2026-01-01T00:00:00Z), so format times look like real ones. */
export const simEpochMs = Date.UTC(2026, 0, 1);
/** A run that fires this many events without reaching its goal is stuck (a livelock). */
export const simEventsPerRunMax = 5_000_000;

interface Event {
  timeMs: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

function earlier(a: Event, b: Event): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}

/** A binary min-heap of events by (timeMs, seq). */
class EventHeap {
  private readonly items: Event[] = [];

  get size(): number {
    return this.items.length;
  }

  push(event: Event): void {
    const items = this.items;
    items.push(event);
    let at = items.length - 1;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!earlier(items[at]!, items[parent]!)) break;
      [items[at], items[parent]] = [items[parent]!, items[at]!];
      at = parent;
    }
  }

  peek(): Event | undefined {
    return this.items[0];
  }

  pop(): Event | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    items[0] = last;
    let at = 0;
    for (;;) {
      const left = 2 * at + 1;
      const right = left + 1;
      let smallest = at;
      if (left < items.length && earlier(items[left]!, items[smallest]!)) smallest = left;
      if (right < items.length && earlier(items[right]!, items[smallest]!)) smallest = right;
      if (smallest === at) return top;
      [items[at], items[smallest]] = [items[smallest]!, items[at]!];
      at = smallest;
    }
  }
}

// The scheduler's own way to let the microtask and nextTick queues drain: its continuation waits
// for a real immediate. Node drains both queues completely after every immediate callback, also
// between two immediates of one check phase, so immediates are queued a batch at a time and each
// resumes the run once: one turn of the event loop (and its poll) serves many events, not one.
// Taken before any trap is installed.
const realSetImmediate = globalThis.setImmediate;
const immediatesPerBatch = 64;
let immediatesQueued = 0;
/** Runs waiting for the queues to drain (more than one when schedulers run side by side). */
const waitingRuns: Array<() => void> = [];
function queueImmediates(): void {
  immediatesQueued += immediatesPerBatch;
  for (let i = 0; i < immediatesPerBatch; i++) realSetImmediate(onImmediate);
}
function onImmediate(): void {
  immediatesQueued -= 1;
  waitingRuns.shift()?.();
  if (immediatesQueued === 0 && waitingRuns.length > 0) queueImmediates();
}
const drainQueues = (): Promise<void> =>
  new Promise<void>((resolve) => {
    waitingRuns.push(resolve);
    if (immediatesQueued === 0) queueImmediates();
  });

export interface FencedClock extends Clock {
  kill(): void;
  readonly alive: boolean;
}

export interface RunGoal {
  /** Stop before the first event later than this simulated time (the clock is left there). */
  untilMs?: number;
  /** Stop as soon as this holds (checked after every event and its microtasks). */
  until?: () => boolean;
  /** Events allowed for this run; past it the run fails with a stuck error. */
  eventsMax?: number;
}

export type RunOutcome = 'goal' | 'time' | 'idle';

export class Scheduler implements Clock {
  private readonly heap = new EventHeap();
  private timeMs: number;
  private seq = 0;
  private running = false;
  /** Events fired since creation: part of the trace that proves replays identical. */
  firedEvents = 0;
  /** Errors thrown by event callbacks; the simulator fails the run on the first one. */
  readonly errors: unknown[] = [];

  constructor(startMs = simEpochMs) {
    this.timeMs = startMs;
  }

  // ---- Clock ----

  nowMs(): number {
    return this.timeMs;
  }

  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.schedule(ms, resolve);
    });
  }

  after(ms: number, fn: () => void): Timer {
    const event = this.schedule(ms, fn);
    return { cancel: () => void (event.cancelled = true) };
  }

  every(ms: number, fn: () => void): Timer {
    if (!(ms > 0)) throw new SdError('INVALID_ARGUMENT', `every() needs a positive interval, not ${ms}`);
    let current: Event;
    let stopped = false;
    const tick = (): void => {
      if (stopped) return;
      current = this.schedule(ms, tick);
      fn();
    };
    current = this.schedule(ms, tick);
    return {
      cancel: () => {
        stopped = true;
        current.cancelled = true;
      },
    };
  }

  /**
   * A Clock for one incarnation of a process: after `kill()` its sleeps never resolve and its
   * timers never fire, so the code of a crashed process stops running, as it would.
   */
  incarnation(): FencedClock {
    let alive = true;
    const guard = (fn: () => void) => () => {
      if (alive) fn();
    };
    return {
      nowMs: () => this.nowMs(),
      sleep: (ms) => new Promise<void>((resolve) => void this.schedule(ms, guard(resolve))),
      after: (ms, fn) => this.after(ms, guard(fn)),
      every: (ms, fn) => {
        const timer = this.every(ms, () => (alive ? fn() : timer.cancel()));
        return timer;
      },
      kill: () => void (alive = false),
      get alive() {
        return alive;
      },
    };
  }

  // ---- driving the simulation ----

  /** Events not yet fired (cancelled ones included until they reach the head). */
  get pendingEvents(): number {
    return this.heap.size;
  }

  /**
   * Fires events in (timeMs, seq) order, draining microtasks after each, until the goal holds,
   * the time limit is reached or no event is left. Real timers are trapped meanwhile.
   */
  async run(goal: RunGoal = {}): Promise<RunOutcome> {
    if (this.running) throw new SdError('INVALID_ARGUMENT', 'the scheduler is already running');
    this.running = true;
    const eventsMax = goal.eventsMax ?? simEventsPerRunMax;
    const trap = realTimerTrap.install();
    try {
      await drainQueues();
      for (let fired = 0; ; fired++) {
        if (goal.until?.()) return 'goal';
        const next = this.skipCancelled();
        if (next === undefined) return 'idle';
        if (goal.untilMs !== undefined && next.timeMs > goal.untilMs) {
          this.timeMs = Math.max(this.timeMs, goal.untilMs);
          return 'time';
        }
        if (fired >= eventsMax) {
          throw new SdError('INTERNAL', `simulation stuck: ${eventsMax} events without reaching the goal`);
        }
        this.heap.pop();
        this.timeMs = next.timeMs;
        this.firedEvents += 1;
        try {
          next.fn();
        } catch (error) {
          this.errors.push(error);
        }
        await drainQueues();
        trap.check();
      }
    } finally {
      trap.uninstall();
      this.running = false;
    }
  }

  /** Runs for `ms` of simulated time. */
  runFor(ms: number, eventsMax?: number): Promise<RunOutcome> {
    return this.run({ untilMs: this.timeMs + ms, ...(eventsMax !== undefined ? { eventsMax } : {}) });
  }

  /** Runs until `promise` settles (or `limitMs` of simulated time pass); returns its result. */
  async settle<T>(promise: Promise<T>, limitMs: number): Promise<{ done: true; value: T } | { done: false; error?: unknown }> {
    let outcome: { done: true; value: T } | { done: false; error: unknown } | undefined;
    promise.then(
      (value) => (outcome = { done: true, value }),
      (error: unknown) => (outcome = { done: false, error }),
    );
    await this.run({ untilMs: this.timeMs + limitMs, until: () => outcome !== undefined });
    return outcome ?? { done: false };
  }

  private skipCancelled(): Event | undefined {
    let head = this.heap.peek();
    while (head?.cancelled) {
      this.heap.pop();
      head = this.heap.peek();
    }
    return head;
  }

  private schedule(ms: number, fn: () => void): Event {
    const delayMs = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const event: Event = { timeMs: this.timeMs + delayMs, seq: this.seq++, fn, cancelled: false };
    this.heap.push(event);
    return event;
  }
}

/**
 * While a simulation runs, `setTimeout`, `setInterval` and `setImmediate` started from this
 * project's code (not from node_modules or Node itself) are recorded; the run then fails with the
 * stack of the first one. The real function still runs, so the test harness keeps working.
 */
const trappedVersions = new WeakMap<object, (...args: unknown[]) => unknown>();

export const realTimerTrap = {
  installed: 0,
  caught: [] as string[],
  originals: new Map<string, unknown>(),
  install(): { check(): void; uninstall(): void } {
    const names = ['setTimeout', 'setInterval', 'setImmediate'] as const;
    const globals = globalThis as unknown as Record<string, unknown>;
    if (this.installed++ === 0) {
      for (const name of names) {
        const original = globals[name] as (...args: unknown[]) => unknown;
        this.originals.set(name, original);
        // Made once per function trapped: a run installs the trap, and there are thousands of runs.
        let trapped = trappedVersions.get(original);
        if (trapped === undefined) {
          trapped = (...args: unknown[]): unknown => {
            const stack = new Error(`real ${name} during a simulation`).stack ?? '';
            if (isProjectCaller(stack)) this.caught.push(stack);
            return original(...args);
          };
          Object.assign(trapped, original);
          trappedVersions.set(original, trapped);
        }
        globals[name] = trapped;
      }
    }
    return {
      check: () => {
        const first = this.caught[0];
        if (first !== undefined) {
          this.caught.length = 0;
          throw new SdError('INTERNAL', `a real timer was started under simulated time:\n${first}`);
        }
      },
      uninstall: () => {
        if (--this.installed > 0) return;
        for (const [name, original] of this.originals) globals[name] = original;
        this.originals.clear();
      },
    };
  },
};

/** Whether the frame that called the timer (the first after the trap's own) is project code. */
function isProjectCaller(stack: string): boolean {
  const frames = stack.split('\n').slice(2);
  const caller = frames.find((frame) => !frame.includes('node:internal'));
  if (caller === undefined) return false;
  // dist-test/: the esbuild bundles the tests run on worker threads (test/support/sim-pool.ts).
  return !caller.includes('node_modules') && (caller.includes('/src/') || caller.includes('/dist/') || caller.includes('/dist-test/'));
}
