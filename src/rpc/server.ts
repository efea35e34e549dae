// The server side of the protocol: frames in on any stream a Transport accepted, each request
// decoded against the protocol and run by its entry in a handler table typed against it. Every
// connection is bounded (engine/limits.ts): how many there are, how many requests each runs at
// once, the memory held for it and for the whole server, and how long a frame, a reply or an
// idle connection may take. Time is the injected Clock's, so the simulator runs this as is.
import type { Duplex } from 'node:stream';
import { SdError, asSdError } from '../engine/errors.js';
import {
  malformedLogBurst,
  malformedLogIntervalMs,
  rpcConnectionHeldBytesMax,
  rpcDrainedCallIntervalMs,
  rpcFrameReadTimeoutMs,
  rpcReplyWriteTimeoutMs,
  rpcServerConnectionsMax,
  rpcServerHeldBytesMax,
  rpcServerIdleTimeoutMs,
  rpcServerInflightRequestsMax,
  refusedLingerMs,
  refusedLingeringMax,
} from '../engine/limits.js';
import { TokenBucket } from '../engine/token-bucket.js';
import type { Clock, Timer } from '../io/clock.js';
import type { Log } from '../io/log.js';
import { decodeRequest } from './decode.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';
import {
  protocol,
  replyBytesAsked,
  type AnyRequest,
  type ValueAndData,
  type Op,
  type Request,
  type RequestPayload,
  type ResultOf,
} from './protocol.js';

export type Handler<K extends Op> = (request: Request<K>, payload: RequestPayload<K>) => Promise<ResultOf<K>>;
/** One entry per op: a missing op, or a handler of the wrong shape, does not compile. */
export type Handlers = { readonly [K in Op]: Handler<K> };

export interface Reply {
  value: unknown;
  payload: Buffer | undefined;
}

export type FrameHandler = (header: Record<string, unknown>, payload: Buffer | undefined) => Promise<Reply>;

type Warn = (fields: object, message: string) => void;

/**
 * Warnings about what clients send, through a token bucket on the clock: `burst` at once, then
 * one per interval; the ones held back are counted into the next line. Never a stack.
 */
export function rateLimitedWarn(clock: Clock, intervalMs: number, log: Pick<Log, 'warn'>, burst = malformedLogBurst): Warn {
  const bucket = new TokenBucket(burst, intervalMs);
  let suppressed = 0;
  return (fields, message) => {
    if (!bucket.take(clock.nowMs())) {
      suppressed += 1;
      return;
    }
    log.warn({ ...fields, suppressed }, message);
    suppressed = 0;
  };
}

/**
 * Decodes, then runs the op's handler. A malformed request is answered with its error (PROTOCOL,
 * INVALID_ARGUMENT) and logged as a rate-limited warning without a stack; it reaches no handler.
 */
export function protocolHandler(handlers: Handlers, clock: Clock, log: Pick<Log, 'warn'>): FrameHandler {
  const warn = rateLimitedWarn(clock, malformedLogIntervalMs, log);
  return async (header, payload) => {
    const decoded = decodeRequest(header, payload);
    if (!decoded.ok) {
      warn({ code: decoded.error.code, reason: decoded.error.message }, 'malformed request');
      throw decoded.error;
    }
    const { request } = decoded.value;
    // decodeRequest checked `request` against the declaration of request.op, whose handler this is.
    const handler = handlers[request.op] as (request: AnyRequest, payload: Buffer | undefined) => Promise<unknown>;
    const result = await handler(request, decoded.value.payload);
    switch (protocol[request.op].payload) {
      case 'reply':
        return { value: null, payload: result as Buffer };
      case 'valueAndData': {
        const { value, data } = result as ValueAndData<unknown>;
        return { value, payload: data };
      }
      default:
        return { value: result, payload: undefined };
    }
  };
}

export interface ServerLimits {
  connectionsMax: number;
  inflightRequestsMax: number;
  connectionHeldBytesMax: number;
  /** For client ops, and again for peer ops. */
  serverHeldBytesMax: number;
  frameReadTimeoutMs: number;
  replyWriteTimeoutMs: number;
  idleTimeoutMs: number;
}

export const serverLimits: ServerLimits = {
  connectionsMax: rpcServerConnectionsMax,
  inflightRequestsMax: rpcServerInflightRequestsMax,
  connectionHeldBytesMax: rpcConnectionHeldBytesMax,
  serverHeldBytesMax: rpcServerHeldBytesMax,
  frameReadTimeoutMs: rpcFrameReadTimeoutMs,
  replyWriteTimeoutMs: rpcReplyWriteTimeoutMs,
  idleTimeoutMs: rpcServerIdleTimeoutMs,
};

export interface RpcServerOptions {
  clock: Clock;
  log: Pick<Log, 'warn'>;
  /** A handler threw something that is not an SdError: a bug, logged with its stack. */
  onBug: (error: unknown) => void;
  limits?: Partial<ServerLimits>;
  /**
   * Called when nothing is held any more after at least half a budget was (at most once per
   * `rpcDrainedCallIntervalMs`): the place to give freed buffers back to the system (io/memory.ts).
   */
  onDrained?: () => void;
}

/** Bytes a server holds for one class of requests; one request alone always fits. */
class ByteBudget {
  used = 0;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly capacity: number,
    private readonly onChange: () => void,
  ) {}

  tryTake(bytes: number): boolean {
    if (bytes > 0 && this.used > 0 && this.used + bytes > this.capacity) return false;
    this.used += bytes;
    this.onChange();
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
    this.onChange();
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** `wake` runs once, at the next give. */
  wait(wake: () => void): void {
    this.waiters.push(wake);
  }
}

/** The connections of one listening port. */
export class RpcServer {
  readonly limits: ServerLimits;
  readonly clock: Clock;
  readonly warn: Warn;
  readonly onBug: (error: unknown) => void;
  readonly budgets: { client: ByteBudget; peer: ByteBudget };
  private readonly connections = new Set<ServerConnection>();
  /** Admitted streams not yet closed: those being served, and those still in a handshake. */
  private slots = 0;
  private lingering = 0;
  private peakBytes = 0;
  private lastDrainedMs = -Infinity;
  private drainTimer: Timer | undefined;

  constructor(
    readonly handle: FrameHandler,
    private readonly options: RpcServerOptions,
  ) {
    this.limits = { ...serverLimits, ...options.limits };
    this.clock = options.clock;
    this.onBug = options.onBug;
    this.warn = rateLimitedWarn(options.clock, malformedLogIntervalMs, options.log);
    const onChange = () => this.noteHeld();
    this.budgets = {
      client: new ByteBudget(this.limits.serverHeldBytesMax, onChange),
      peer: new ByteBudget(this.limits.serverHeldBytesMax, onChange),
    };
  }

  private noteHeld(): void {
    const held = this.heldBytes;
    this.peakBytes = Math.max(this.peakBytes, held);
    const onDrained = this.options.onDrained;
    if (held > 0 || this.peakBytes < this.limits.serverHeldBytesMax / 2 || !onDrained || this.drainTimer) return;
    const waitMs = this.lastDrainedMs + rpcDrainedCallIntervalMs - this.clock.nowMs();
    const fire = () => {
      this.drainTimer = undefined;
      if (this.heldBytes > 0) return; // busy again: the next drain calls
      this.peakBytes = 0;
      this.lastDrainedMs = this.clock.nowMs();
      onDrained();
    };
    if (waitMs <= 0) fire();
    else this.drainTimer = this.clock.after(waitMs, fire);
  }

  /** For a Transport's `listen`: admitted under the cap, then served with the server's handler. */
  accept(stream: Duplex, remote = '?'): void {
    if (this.admitSlot(stream, remote)) this.serve(stream, remote);
  }

  /**
   * Takes a slot under the connection cap for `stream` until it closes, or refuses it. A caller
   * with its own first exchange (the key handshake) admits first, so connections still
   * handshaking count too, then calls `serve`.
   */
  admitSlot(stream: Duplex, remote = '?'): boolean {
    if (!this.admit(stream, remote)) return false;
    this.slots += 1;
    stream.once('close', () => (this.slots -= 1));
    return true;
  }

  /** Serves an admitted stream with `handle` (default: the server's). */
  serve(stream: Duplex, remote = '?', handle: FrameHandler = this.handle): void {
    const connection = new ServerConnection(this, stream, remote, handle);
    this.connections.add(connection);
    stream.once('close', () => this.connections.delete(connection));
  }

  /**
   * The connection cap: past it a connection gets one error frame (id 0, BUSY) naming the limit,
   * and is closed; clients report it as the reason of their failed request.
   */
  private admit(stream: Duplex, remote: string): boolean {
    if (this.slots < this.limits.connectionsMax) return true;
    this.warn({ remote, connections: this.slots }, 'connection refused: too many connections');
    stream.on('error', () => stream.destroy());
    // Refusals lingering for their frame to reach the client are bounded too, so a flood of
    // connections cannot use up the descriptors the cap protects.
    if (this.lingering >= refusedLingeringMax) {
      stream.destroy();
      return false;
    }
    this.lingering += 1;
    stream.once('close', () => (this.lingering -= 1));
    stream.resume(); // reads (and drops) what it sent, so its close is seen
    const message = `too many connections (${this.limits.connectionsMax}); try again later`;
    for (const piece of encodeFrame({ id: 0, ok: false, code: 'BUSY', message })) stream.write(piece);
    stream.end();
    const timer = this.clock.after(refusedLingerMs, () => stream.destroy());
    stream.once('close', () => timer.cancel());
    return false;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Bytes held for requests and replies, all connections together. */
  get heldBytes(): number {
    return this.budgets.client.used + this.budgets.peer.used;
  }

  closeAll(): void {
    for (const connection of this.connections) connection.close();
  }
}

/** One request's hold on memory: given back once its reply has left, or its connection closed. */
interface Hold {
  bytes: number;
  budget: ByteBudget;
  /** Its reply is written and not yet taken: a broken stream may never call back. */
  sending: boolean;
  released: boolean;
}

class ServerConnection {
  private readonly decoder = new FrameDecoder();
  private inflight = 0;
  private heldBytes = 0;
  private readonly holds = new Set<Hold>();
  /** The hold taken for the frame being received, once its header said what it needs. */
  private frameHold: Hold | undefined;
  private waiting = false;
  private paused = false;
  private closed = false;
  /** Writes not yet taken by the client. */
  private unflushed = 0;
  private lastReceiveMs: number;
  private lastFlushMs: number;
  /** When the frame being received started, or reading resumed after we paused. */
  private frameSinceMs: number | undefined;
  private readonly watchdog: Timer;

  constructor(
    private readonly server: RpcServer,
    private readonly stream: Duplex,
    private readonly remote: string,
    private readonly handle: FrameHandler,
  ) {
    const { clock, limits } = server;
    this.lastReceiveMs = this.lastFlushMs = clock.nowMs();
    stream.on('error', () => stream.destroy());
    stream.on('close', () => this.onClose());
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    const periodMs = Math.max(1, Math.min(limits.frameReadTimeoutMs, limits.replyWriteTimeoutMs, limits.idleTimeoutMs) / 4);
    this.watchdog = clock.every(periodMs, () => this.check());
  }

  close(): void {
    this.stream.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    const nowMs = this.server.clock.nowMs();
    this.lastReceiveMs = nowMs;
    if (!this.decoder.partial) this.frameSinceMs = nowMs;
    this.decoder.append(chunk);
    this.pump();
  }

  /** Starts every request that fits; pauses the stream when the next one does not. */
  private pump(): void {
    // A stream the client has closed gets no new work: its replies would only be garbage.
    if (this.closed || this.stream.destroyed || this.stream.readableEnded) return;
    const { limits } = this.server;
    for (;;) {
      if (this.inflight >= limits.inflightRequestsMax) return this.pause();
      if (this.unflushed > 0 && this.stream.writableLength >= limits.connectionHeldBytesMax) return this.pause();
      let frame: Frame | undefined;
      try {
        const head = this.decoder.head();
        if (!head) return this.resume();
        if (!this.frameHold) {
          const hold = this.reserve(head.header, head.payloadBytes);
          if (!hold) return this.pause();
          this.frameHold = hold;
        }
        frame = this.decoder.next();
      } catch (error) {
        this.server.warn({ remote: this.remote, reason: asSdError(error).message }, 'malformed frame, connection closed');
        return this.close();
      }
      if (!frame) return this.resume();
      const hold = this.frameHold!;
      this.frameHold = undefined;
      this.frameSinceMs = this.decoder.partial ? this.server.clock.nowMs() : undefined;
      if (!this.run(frame, hold)) return;
    }
  }

  /** Holds the memory a request needs, if its connection and the server have it. */
  private reserve(header: Record<string, unknown>, payloadBytes: number): Hold | undefined {
    const bytes = payloadBytes + replyBytesAsked(header);
    const op = header['op'];
    const budget = typeof op === 'string' && op.startsWith('peer.') ? this.server.budgets.peer : this.server.budgets.client;
    if (bytes > 0 && this.heldBytes > 0 && this.heldBytes + bytes > this.server.limits.connectionHeldBytesMax) return undefined;
    if (!budget.tryTake(bytes)) {
      if (!this.waiting) {
        this.waiting = true;
        budget.wait(() => {
          this.waiting = false;
          this.pump();
        });
      }
      return undefined;
    }
    const hold = { bytes, budget, sending: false, released: false };
    this.heldBytes += bytes;
    this.holds.add(hold);
    return hold;
  }

  private release(hold: Hold): void {
    if (hold.released) return;
    hold.released = true;
    this.holds.delete(hold);
    this.heldBytes -= hold.bytes;
    hold.budget.give(hold.bytes);
    this.pump();
  }

  /** Runs one request; false if the stream was found broken. */
  private run(frame: Frame, hold: Hold): boolean {
    const id = frame.header['id'];
    if (typeof id !== 'number') {
      this.server.warn({ remote: this.remote }, 'request without an id, connection closed');
      this.release(hold);
      this.close();
      return false;
    }
    this.inflight += 1;
    const { onBug } = this.server;
    this.handle(frame.header, frame.payload)
      .then(
        (reply) => encodeFrame({ id, ok: true, value: reply.value }, reply.payload),
        (error: unknown) => encodeFrame(errorHeader(id, error, onBug)),
      )
      .then((pieces) => this.send(pieces, hold))
      .catch((error: unknown) => {
        onBug(error);
        this.release(hold);
      })
      .finally(() => {
        this.inflight -= 1;
        this.pump();
      });
    return true;
  }

  /** Writes a reply; its hold is given back when the last piece has left (or the stream broke). */
  private send(pieces: Buffer[], hold: Hold): void {
    if (this.closed || this.stream.destroyed) return this.release(hold);
    hold.sending = true;
    if (this.unflushed === 0) this.lastFlushMs = this.server.clock.nowMs();
    this.unflushed += 1;
    const last = pieces.length - 1;
    // Corked: the reply's pieces leave in one writev, not a syscall (and a segment) each.
    this.stream.cork();
    pieces.forEach((piece, index) => {
      if (index < last) this.stream.write(piece);
      else
        this.stream.write(piece, () => {
          this.unflushed -= 1;
          this.lastFlushMs = this.server.clock.nowMs();
          this.release(hold);
        });
    });
    this.stream.uncork();
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.stream.pause();
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    // Time we spent not reading is not the client's.
    if (this.frameSinceMs !== undefined) this.frameSinceMs = this.server.clock.nowMs();
    this.stream.resume();
  }

  /** The deadlines: a frame must complete, replies must be taken, an idle connection goes. */
  private check(): void {
    if (this.closed) return;
    const { clock, limits } = this.server;
    const nowMs = clock.nowMs();
    let reason: string | undefined;
    if (!this.paused && this.frameSinceMs !== undefined && this.decoder.partial && nowMs - this.frameSinceMs > limits.frameReadTimeoutMs) {
      reason = `a frame was not complete within ${limits.frameReadTimeoutMs} ms`;
    } else if (this.unflushed > 0 && nowMs - this.lastFlushMs > limits.replyWriteTimeoutMs) {
      reason = `replies were not taken within ${limits.replyWriteTimeoutMs} ms`;
    } else if (this.inflight === 0 && this.unflushed === 0 && !this.decoder.partial && nowMs - this.lastReceiveMs > limits.idleTimeoutMs) {
      this.close(); // an idle connection is nobody's fault: closed without a warning
      return;
    }
    if (reason === undefined) return;
    this.server.warn({ remote: this.remote, reason }, 'slow client disconnected');
    this.close();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.watchdog.cancel();
    // Requests still running keep their hold until they finish (send releases it then).
    if (this.frameHold) this.release(this.frameHold);
    this.frameHold = undefined;
    for (const hold of [...this.holds]) if (hold.sending) this.release(hold);
  }
}

/**
 * Serves frames on a stream with the default limits: for tests and tools that need one
 * connection; a daemon makes one RpcServer for its port.
 */
export function serveConnection(stream: Duplex, handle: FrameHandler, onBug: (error: unknown) => void, options: Omit<RpcServerOptions, 'onBug'>): void {
  new RpcServer(handle, { ...options, onBug }).accept(stream);
}

function errorHeader(id: number, error: unknown, onBug: (error: unknown) => void): object {
  let sd: SdError;
  try {
    sd = asSdError(error);
  } catch (bug) {
    onBug(bug);
    sd = new SdError('INTERNAL', 'internal error');
  }
  const header = { id, ok: false, code: sd.code, message: sd.message };
  return sd.epoch === undefined ? header : { ...header, epoch: sd.epoch };
}
