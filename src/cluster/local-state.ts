// The pure state machine of the `local` cluster driver: one log event in, the next state and the
// deliveries out. Every process applies the same lines of DIR/events in the same order, so every
// process computes the same membership, pending joins and lock queue. No I/O here: the driver
// (local.ts) reads lines, feeds them in, and acts on the outputs that concern itself.
import assert from 'node:assert/strict';
import type { Json, JoinVerdict, NodeInfo } from './driver.js';

/**
 * A process that asked to join, identified by `inc` (incarnation): a random id per driver instance,
 * so a restarted node with the same `addr:port` is never mistaken for its dead predecessor.
 */
export interface Incarnation {
  inc: string;
  info: NodeInfo;
  pid: number;
  /** /proc/PID/stat start time: tells a reused pid apart from the member. null when unknown. */
  start: string | null;
}

export type LogEvent =
  | { t: 'join_request'; inc: string; node: NodeInfo; pid: number; start: string | null; request: Json }
  | { t: 'join_response'; inc: string; by: string; verdict: JoinVerdict }
  | { t: 'leave'; inc: string; node: string }
  | { t: 'block'; inc: string; seq: number }
  | { t: 'unblock'; inc: string; seq: number; message: Json }
  | { t: 'notify'; inc: string; seq: number; message: Json };

export interface PendingJoin extends Incarnation {
  request: Json;
  /** The incarnation asked to answer (the master, or the joiner itself when nobody is a member). */
  assignedTo: string | null;
}

export interface LockRequest {
  inc: string;
  seq: number;
}

export interface LocalState {
  /** In join order: members[0] is the master. */
  readonly members: readonly Incarnation[];
  /** In log order. */
  readonly pending: readonly PendingJoin[];
  /** Un-released block requests of members, in log order: lockQueue[0] holds the lock. */
  readonly lockQueue: readonly LockRequest[];
}

export type Output =
  /** `responder` must call checkJoin for `joiner` now and append a join_response. */
  | { kind: 'check_join'; responder: string; joiner: Incarnation; request: Json }
  | { kind: 'join'; joiner: Incarnation; members: NodeInfo[]; payload: Json }
  | { kind: 'refused'; joiner: Incarnation; reason: string }
  /** A pending joiner left (or died) before its join was decided. */
  | { kind: 'dropped'; joiner: Incarnation }
  | { kind: 'leave'; node: Incarnation; members: NodeInfo[] }
  /** A notify or an unblock message; `ack` lets the sender resolve its own call. */
  | { kind: 'notify'; from: Incarnation; message: Json; ack: { inc: string; seq: number; unblock: boolean } }
  | { kind: 'granted'; inc: string; seq: number }
  /** The line changed nothing (duplicate leave, stale response...): kept for diagnostics. */
  | { kind: 'ignored'; why: string };

export interface Applied {
  state: LocalState;
  outputs: Output[];
}

export function initialState(): LocalState {
  return { members: [], pending: [], lockQueue: [] };
}

export function memberInfos(state: LocalState): NodeInfo[] {
  return state.members.map((member) => member.info);
}

export function findMember(state: LocalState, inc: string): Incarnation | undefined {
  return state.members.find((member) => member.inc === inc);
}

export function lockHolder(state: LocalState): LockRequest | undefined {
  return state.lockQueue[0];
}

/** Applies one log line. Deterministic: the same state and event give the same result everywhere. */
export function applyEvent(state: LocalState, event: LogEvent): Applied {
  switch (event.t) {
    case 'join_request':
      return applyJoinRequest(state, event);
    case 'join_response':
      return applyJoinResponse(state, event);
    case 'leave':
      return applyLeave(state, event.inc);
    case 'block':
      return applyBlock(state, event);
    case 'unblock':
      return applyUnblock(state, event);
    case 'notify':
      return applyNotify(state, event);
  }
}

function ignored(state: LocalState, why: string): Applied {
  return { state, outputs: [{ kind: 'ignored', why }] };
}

function applyJoinRequest(state: LocalState, event: Extract<LogEvent, { t: 'join_request' }>): Applied {
  const joiner: Incarnation = { inc: event.inc, info: event.node, pid: event.pid, start: event.start };
  const known = state.members.some((m) => m.inc === joiner.inc) || state.pending.some((p) => p.inc === joiner.inc);
  if (known) return ignored(state, `duplicate join_request ${joiner.inc}`);
  // A second live claim on the same addr:port is refused by rule, without asking the master: every
  // process reaches the same verdict from the log alone. (A joiner reports a dead predecessor as
  // left before it asks, so a restart is not refused.)
  const clash =
    state.members.some((m) => m.info.id === joiner.info.id) || state.pending.some((p) => p.info.id === joiner.info.id);
  if (clash) {
    const reason = `node ${joiner.info.id} is already a member or joining`;
    return { state, outputs: [{ kind: 'refused', joiner, reason }] };
  }
  const pending = [...state.pending, { ...joiner, request: event.request, assignedTo: null }];
  return assignPending({ ...state, pending }, []);
}

function applyJoinResponse(state: LocalState, event: Extract<LogEvent, { t: 'join_response' }>): Applied {
  const index = state.pending.findIndex((p) => p.inc === event.inc);
  const request = state.pending[index];
  if (request === undefined) return ignored(state, `response for unknown join ${event.inc}`);
  // Only the responder assigned at this point of the log may answer: a late answer from a master
  // that was already reported as left would otherwise make two verdicts for one join.
  if (request.assignedTo !== event.by) return ignored(state, `response for ${event.inc} from non-assignee ${event.by}`);
  const pending = state.pending.filter((_, i) => i !== index);
  const joiner: Incarnation = { inc: request.inc, info: request.info, pid: request.pid, start: request.start };
  if (!event.verdict.accept) {
    return assignPending({ ...state, pending }, [{ kind: 'refused', joiner, reason: event.verdict.reason }]);
  }
  const members = [...state.members, joiner];
  const outputs: Output[] = [{ kind: 'join', joiner, members: members.map((m) => m.info), payload: event.verdict.payload }];
  return assignPending({ ...state, members, pending }, outputs);
}

function applyLeave(state: LocalState, inc: string): Applied {
  const pendingJoin = state.pending.find((p) => p.inc === inc);
  if (pendingJoin !== undefined) {
    const pending = state.pending.filter((p) => p.inc !== inc);
    return assignPending({ ...state, pending }, [{ kind: 'dropped', joiner: pendingJoin }]);
  }
  const node = findMember(state, inc);
  if (node === undefined) return ignored(state, `leave of non-member ${inc}`);
  const members = state.members.filter((m) => m.inc !== inc);
  const holderBefore = lockHolder(state);
  const lockQueue = state.lockQueue.filter((request) => request.inc !== inc);
  const outputs: Output[] = [{ kind: 'leave', node, members: members.map((m) => m.info) }];
  const next: LocalState = { ...state, members, lockQueue };
  pushGrantIfHolderChanged(holderBefore, next, outputs);
  return assignPending(next, outputs);
}

function applyBlock(state: LocalState, event: Extract<LogEvent, { t: 'block' }>): Applied {
  if (findMember(state, event.inc) === undefined) return ignored(state, `block from non-member ${event.inc}`);
  const holderBefore = lockHolder(state);
  const next: LocalState = { ...state, lockQueue: [...state.lockQueue, { inc: event.inc, seq: event.seq }] };
  const outputs: Output[] = [];
  pushGrantIfHolderChanged(holderBefore, next, outputs);
  return { state: next, outputs };
}

function applyUnblock(state: LocalState, event: Extract<LogEvent, { t: 'unblock' }>): Applied {
  const from = findMember(state, event.inc);
  if (from === undefined) return ignored(state, `unblock from non-member ${event.inc}`);
  const holderBefore = lockHolder(state);
  // The driver only sends unblock while holding; a stray one still broadcasts its message (it is
  // in the log for everyone) but must not release somebody else's lock.
  const releases = holderBefore?.inc === event.inc;
  const next: LocalState = releases ? { ...state, lockQueue: state.lockQueue.slice(1) } : state;
  const ack = { inc: event.inc, seq: event.seq, unblock: true };
  // The message goes out before the next holder's grant: whoever enters next sees its effect.
  const outputs: Output[] = [{ kind: 'notify', from, message: event.message, ack }];
  pushGrantIfHolderChanged(holderBefore, next, outputs);
  return { state: next, outputs };
}

function applyNotify(state: LocalState, event: Extract<LogEvent, { t: 'notify' }>): Applied {
  const from = findMember(state, event.inc);
  if (from === undefined) return ignored(state, `notify from non-member ${event.inc}`);
  const ack = { inc: event.inc, seq: event.seq, unblock: false };
  return { state, outputs: [{ kind: 'notify', from, message: event.message, ack }] };
}

function pushGrantIfHolderChanged(before: LockRequest | undefined, next: LocalState, outputs: Output[]): void {
  const after = lockHolder(next);
  if (after === undefined) return;
  if (before !== undefined && before.inc === after.inc && before.seq === after.seq) return;
  outputs.push({ kind: 'granted', inc: after.inc, seq: after.seq });
}

/**
 * Decides who answers the oldest pending join: the master (oldest member); when there is no member,
 * the first pending joiner, for itself, so that simultaneous first joiners do not each found their
 * own cluster. Later joins wait their turn. A request whose responder changed (master left, first
 * member arrived) is asked again.
 */
function assignPending(state: LocalState, outputs: Output[]): Applied {
  const master = state.members[0];
  let changed = false;
  const pending = state.pending.map((request, index): PendingJoin => {
    // One join at a time: the next verdict is asked for only once this one is applied, so it is
    // decided from a state that includes every earlier join (two verdicts from one state would
    // give the joiners different epoch histories).
    const responder = index !== 0 ? null : (master?.inc ?? request.inc);
    if (responder === request.assignedTo) return request;
    changed = true;
    if (responder !== null) {
      const joiner: Incarnation = { inc: request.inc, info: request.info, pid: request.pid, start: request.start };
      outputs.push({ kind: 'check_join', responder, joiner, request: request.request });
    }
    return { ...request, assignedTo: responder };
  });
  return { state: changed ? { ...state, pending } : state, outputs };
}

// ---- parsing: a line of the log is untrusted text; a bad line is skipped by every process alike ----

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

function isSeq(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

export function isNodeInfo(value: unknown): value is NodeInfo {
  if (!isRecord(value)) return false;
  return (
    isNonEmptyString(value.id) &&
    typeof value.addr === 'string' &&
    Number.isSafeInteger(value.port) &&
    Number.isSafeInteger(value.zone) &&
    Number.isSafeInteger(value.vnodes) &&
    Number.isSafeInteger(value.nbdPort)
  );
}

export function isJoinVerdict(value: unknown): value is JoinVerdict {
  if (!isRecord(value)) return false;
  if (value.accept === true) return 'payload' in value;
  return value.accept === false && typeof value.reason === 'string';
}

/** The event of one log line, or null when the line is not a well-formed event. */
export function parseEventLine(line: string): LogEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isRecord(value) || !isNonEmptyString(value.inc)) return null;
  const event = value as Record<string, unknown> & { inc: string };
  switch (event.t) {
    case 'join_request':
      if (!isNodeInfo(event.node) || !Number.isSafeInteger(event.pid) || !('request' in event)) return null;
      if (event.start !== null && typeof event.start !== 'string') return null;
      return event as unknown as LogEvent;
    case 'join_response':
      return isNonEmptyString(event.by) && isJoinVerdict(event.verdict) ? (event as unknown as LogEvent) : null;
    case 'leave':
      return typeof event.node === 'string' ? (event as unknown as LogEvent) : null;
    case 'block':
      return isSeq(event.seq) ? (event as unknown as LogEvent) : null;
    case 'unblock':
    case 'notify':
      return isSeq(event.seq) && 'message' in event ? (event as unknown as LogEvent) : null;
    default:
      return null;
  }
}

export function formatEventLine(event: LogEvent): string {
  const line = JSON.stringify(event);
  // JSON.stringify escapes control characters, so one event is always exactly one line.
  assert.ok(!line.includes('\n'));
  return `${line}\n`;
}
