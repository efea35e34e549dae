// The local driver's state machine, without files or processes: membership, master choice, join
// hand-over after a master dies, the lock queue, and idempotent leaves.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NodeInfo } from '../src/cluster/driver.js';
import {
  applyEvent,
  formatEventLine,
  initialState,
  lockHolder,
  parseEventLine,
  type LocalState,
  type LogEvent,
  type Output,
} from '../src/cluster/local-state.js';
import { createLocalDriver, defaultLocalDir, isProcessAlive, processLiveness, processStartToken } from '../src/cluster/local.js';
import { BeatWatch } from '../src/cluster/local-beats.js';

function nodeInfo(port: number): NodeInfo {
  return { id: `127.0.0.1:${port}`, addr: '127.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 };
}

function request(inc: string, port: number): LogEvent {
  return { t: 'join_request', inc, node: nodeInfo(port), pid: 1000 + port, start: 's', request: { port } };
}

function accept(inc: string, by: string): LogEvent {
  return { t: 'join_response', inc, by, verdict: { accept: true, payload: { by } } };
}

/** Applies events in order, collecting every output. */
function run(events: LogEvent[], from: LocalState = initialState()): { state: LocalState; outputs: Output[] } {
  let state = from;
  const outputs: Output[] = [];
  for (const event of events) {
    const applied = applyEvent(state, event);
    state = applied.state;
    outputs.push(...applied.outputs);
  }
  return { state, outputs };
}

function checks(outputs: Output[]): Array<[string, string]> {
  return outputs.flatMap((o) => (o.kind === 'check_join' ? [[o.responder, o.joiner.inc] as [string, string]] : []));
}

function ids(state: LocalState): string[] {
  return state.members.map((m) => m.inc);
}

describe('local driver state machine', () => {
  it('lets only the first of simultaneous first joiners decide, then hands the rest to it one at a time', () => {
    const first = run([request('a', 1), request('b', 2), request('c', 3)]);
    expect(checks(first.outputs)).toEqual([['a', 'a']]);
    const after = run([accept('a', 'a')], first.state);
    expect(ids(after.state)).toEqual(['a']);
    // The next verdict is asked for only once the previous join is applied: two verdicts decided
    // from one state would hand the joiners different epoch histories.
    expect(checks(after.outputs)).toEqual([['a', 'b']]);
    const early = run([accept('c', 'a')], after.state);
    expect(early.outputs.map((o) => o.kind)).toEqual(['ignored']);
    const second = run([accept('b', 'a')], after.state);
    expect(checks(second.outputs)).toEqual([['a', 'c']]);
    const all = run([accept('c', 'a')], second.state);
    expect(ids(all.state)).toEqual(['a', 'b', 'c']);
    const joins = [...second.outputs, ...all.outputs].filter((o) => o.kind === 'join');
    expect(joins.map((o) => (o.kind === 'join' ? o.members.map((m) => m.port) : []))).toEqual([
      [1, 2],
      [1, 2, 3],
    ]);
  });

  it('asks the oldest member, and the next oldest when the master leaves with joins pending', () => {
    const base = run([request('a', 1), accept('a', 'a'), request('b', 2), accept('b', 'a'), request('c', 3)]);
    expect(checks(base.outputs).at(-1)).toEqual(['a', 'c']);
    const masterGone = run([{ t: 'leave', inc: 'a', node: '127.0.0.1:1' }], base.state);
    expect(checks(masterGone.outputs)).toEqual([['b', 'c']]);
    // A late answer from the dead master is not a second verdict.
    const stale = run([accept('c', 'a')], masterGone.state);
    expect(stale.outputs.map((o) => o.kind)).toEqual(['ignored']);
    const answered = run([accept('c', 'b')], masterGone.state);
    expect(ids(answered.state)).toEqual(['b', 'c']);
  });

  it('lets the next pending joiner found the cluster when the first one dies or is refused', () => {
    const two = run([request('a', 1), request('b', 2)]);
    const dead = run([{ t: 'leave', inc: 'a', node: '127.0.0.1:1' }], two.state);
    expect(dead.outputs[0]?.kind).toBe('dropped');
    expect(checks(dead.outputs)).toEqual([['b', 'b']]);
    const refused = run(
      [{ t: 'join_response', inc: 'a', by: 'a', verdict: { accept: false, reason: 'no' } }],
      two.state,
    );
    expect(refused.outputs[0]).toMatchObject({ kind: 'refused', reason: 'no' });
    expect(checks(refused.outputs)).toEqual([['b', 'b']]);
  });

  it('refuses a second claim on a live addr:port by rule', () => {
    const { state } = run([request('a', 1), accept('a', 'a')]);
    const clash = run([request('a2', 1)], state);
    expect(clash.outputs[0]).toMatchObject({ kind: 'refused' });
    expect(clash.state.pending).toHaveLength(0);
    // After the old incarnation left, the same addr:port may join again.
    const restart = run([{ t: 'leave', inc: 'a', node: '127.0.0.1:1' }, request('a2', 1)], state);
    expect(checks(restart.outputs)).toEqual([['a2', 'a2']]);
  });

  it('ignores duplicate leaves and leaves of non-members', () => {
    const { state } = run([request('a', 1), accept('a', 'a'), request('b', 2), accept('b', 'a')]);
    const leave: LogEvent = { t: 'leave', inc: 'b', node: '127.0.0.1:2' };
    const twice = run([leave, leave, { t: 'leave', inc: 'zz', node: 'x' }], state);
    expect(twice.outputs.map((o) => o.kind)).toEqual(['leave', 'ignored', 'ignored']);
    expect(ids(twice.state)).toEqual(['a']);
  });

  it('grants the lock in log order, delivers the unblock message before the next grant', () => {
    const { state } = run([request('a', 1), accept('a', 'a'), request('b', 2), accept('b', 'a')]);
    const blocks = run(
      [
        { t: 'block', inc: 'b', seq: 7 },
        { t: 'block', inc: 'a', seq: 3 },
      ],
      state,
    );
    expect(blocks.outputs).toEqual([{ kind: 'granted', inc: 'b', seq: 7 }]);
    const stray = run([{ t: 'unblock', inc: 'a', seq: 4, message: 'x' }], blocks.state);
    expect(lockHolder(stray.state)).toEqual({ inc: 'b', seq: 7 });
    const released = run([{ t: 'unblock', inc: 'b', seq: 8, message: 'done' }], blocks.state);
    expect(released.outputs.map((o) => o.kind)).toEqual(['notify', 'granted']);
    expect(released.outputs[0]).toMatchObject({ message: 'done', ack: { inc: 'b', seq: 8, unblock: true } });
    expect(released.outputs[1]).toEqual({ kind: 'granted', inc: 'a', seq: 3 });
  });

  it('releases the lock of a holder that leaves, after reporting the leave', () => {
    const { state } = run([
      request('a', 1),
      accept('a', 'a'),
      request('b', 2),
      accept('b', 'a'),
      { t: 'block', inc: 'a', seq: 0 },
      { t: 'block', inc: 'b', seq: 0 },
      { t: 'block', inc: 'a', seq: 1 },
    ]);
    const gone = run([{ t: 'leave', inc: 'a', node: '127.0.0.1:1' }], state);
    expect(gone.outputs.map((o) => o.kind)).toEqual(['leave', 'granted']);
    expect(gone.state.lockQueue).toEqual([{ inc: 'b', seq: 0 }]);
  });

  it('ignores events of non-members', () => {
    const outputs = run([
      { t: 'notify', inc: 'x', seq: 0, message: 1 },
      { t: 'block', inc: 'x', seq: 0 },
    ]).outputs;
    expect(outputs.map((o) => o.kind)).toEqual(['ignored', 'ignored']);
  });

  it('round-trips events through one line and rejects malformed lines', () => {
    const event = request('a', 1);
    const line = formatEventLine(event);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(parseEventLine(line.slice(0, -1))).toEqual(event);
    expect(parseEventLine('{"t":"notify","inc":"a"}')).toBeNull();
    expect(parseEventLine('{"t":"join_request","inc":"a","node":{}}')).toBeNull();
    expect(parseEventLine('not json')).toBeNull();
    expect(parseEventLine('{"t":"what","inc":"a"}')).toBeNull();
  });
});

describe('local driver directory', () => {
  it('defaults to a per-user runtime directory, never a fixed path under /tmp', () => {
    const dir = defaultLocalDir({ XDG_RUNTIME_DIR: '/run/user/1234' });
    if (process.getuid?.() === 0) expect(dir).toBe('/run/sheepdog-local');
    else expect(dir).toBe('/run/user/1234/sheepdog-local');
    const fallback = defaultLocalDir({});
    expect(fallback).not.toBe(path.join(os.tmpdir(), 'sheepdog-local'));
  });

  it('refuses a directory that others can write to', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-local-mode-'));
    try {
      fs.chmodSync(dir, 0o777);
      const driver = createLocalDriver({ dir });
      const handlers = { checkJoin: () => ({ accept: true as const, payload: null }), onJoin() {}, onLeave() {}, onNotify() {} };
      await expect(driver.join(nodeInfo(1), null, handlers)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells a live process from a dead or reused pid by its start time', () => {
    const start = processStartToken(process.pid);
    expect(isProcessAlive(process.pid, start)).toBe(true);
    expect(isProcessAlive(process.pid, 'not-my-start-time')).toBe(false);
    expect(isProcessAlive(2 ** 22 + 12345, null)).toBe(false);
    expect(processLiveness(2 ** 22 + 12345, start)).toEqual({ state: 'dead' });
    expect(processLiveness(process.pid, start)).toEqual({ state: 'alive' });
  });

  it('calls a heartbeat stale only after it read the same on every check of the stale window', () => {
    const watch = new BeatWatch(3);
    const reads = ['1', '1', '1', '2', '2', '2', '2'].map((text) => watch.stale('a', text));
    expect(reads).toEqual([false, false, false, false, false, false, true]);
    // A missing file is a value that does not change; another member is tracked apart.
    expect([null, null, null, null].map((text) => watch.stale('b', text))).toEqual([false, false, false, true]);
    watch.retain(new Set(['b']));
    expect(watch.stale('a', '2')).toBe(false); // forgotten: starts over
  });
});
