// The one rpc client: typed calls to one sheep over one multiplexed stream from a Transport, many
// requests in flight, matched by id. Reconnects lazily after a failure, and closes a connection
// left idle before the server would (limits.ts), so no request is sent into a closing one. With
// `auth`, each new stream first proves the cluster key (auth.ts).
import type { Duplex } from 'node:stream';
import { SdError, asSdError, isErrorCode } from '../engine/errors.js';
import { rpcClientIdleTimeoutMs, rpcConnectTimeoutMs, rpcInflightRequestsMax, rpcRequestTimeoutMs } from '../engine/limits.js';
import type { Clock, Timer } from '../io/clock.js';
import type { Transport } from '../io/transport.js';
import { connectSession, unkeyedOps, type ClientAuth, type Session } from './auth.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';
import { protocol, type Op, type PayloadArgs, type RequestFields, type ResultOf } from './protocol.js';

interface Pending {
  resolve(frame: Frame): void;
  reject(error: SdError): void;
  timer: Timer;
  stream: Duplex;
}

export interface RpcClientOptions {
  transport: Transport;
  clock: Clock;
  host: string;
  port: number;
  timeoutMs?: number;
  /** The key handshake of every new stream; without it the stream is used as it is (tests). */
  auth?: ClientAuth;
  /** Told of every request when it settles, with its time (`dog -T`). */
  onRequest?: (op: Op, elapsedMs: number, ok: boolean) => void;
}

export class RpcClient {
  readonly host: string;
  readonly port: number;
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private readonly auth: ClientAuth | undefined;
  private readonly onRequest: RpcClientOptions['onRequest'];
  private stream: Duplex | undefined;
  /** How the current stream was let in: an unkeyed one serves only `unkeyedOps`. */
  private session: Session = 'authenticated';
  private connecting: Promise<Duplex> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private idleTimer: Timer | undefined;

  constructor(options: RpcClientOptions) {
    this.transport = options.transport;
    this.clock = options.clock;
    this.host = options.host;
    this.port = options.port;
    this.timeoutMs = options.timeoutMs ?? rpcRequestTimeoutMs;
    this.auth = options.auth;
    this.onRequest = options.onRequest;
  }

  /** The current stream was let in before the sheep had a key (it serves only `unkeyedOps`). */
  get unkeyed(): boolean {
    return this.stream !== undefined && this.session === 'unkeyed';
  }

  /** Sends one request; resolves with the op's result (for data-answering ops, the data). */
  async call<K extends Op>(op: K, fields: RequestFields<K>, ...payload: PayloadArgs<K>): Promise<ResultOf<K>> {
    const frame = this.onRequest === undefined ? await this.send(op, fields, payload[0]) : await this.timed(op, this.send(op, fields, payload[0]));
    // The server answers each op with the result the protocol declares for it.
    const data = frame.payload ?? Buffer.alloc(0);
    const kind = protocol[op].payload;
    const result = kind === 'reply' ? data : kind === 'valueAndData' ? { value: frame.header['value'], data } : frame.header['value'];
    return result as ResultOf<K>;
  }

  private async timed(op: Op, sending: Promise<Frame>): Promise<Frame> {
    const startMs = this.clock.nowMs();
    try {
      const frame = await sending;
      this.onRequest?.(op, this.clock.nowMs() - startMs, true);
      return frame;
    } catch (error) {
      this.onRequest?.(op, this.clock.nowMs() - startMs, false);
      throw error;
    }
  }

  private async send(op: Op, fields: object, payload: Buffer | undefined): Promise<Frame> {
    const stream = await this.connectFor(op);
    const unkeyed = this.session === 'unkeyed';
    try {
      return await this.sendOn(stream, op, fields, payload);
    } catch (error) {
      // The sheep got its key after this stream was let in (a format since): it refused the
      // request unserved, so it goes once more on a new stream that proves the key.
      if (!unkeyed || !(error instanceof SdError) || error.code !== 'AUTH') throw error;
      this.drop(stream, error);
      return this.sendOn(await this.connectFor(op), op, fields, payload);
    }
  }

  private async connectFor(op: Op): Promise<Duplex> {
    if (this.closed) throw new SdError('NETWORK', 'connection closed');
    if (this.pending.size >= rpcInflightRequestsMax) throw new SdError('BUSY', 'too many requests in flight');
    return this.connect(op);
  }

  private sendOn(stream: Duplex, op: Op, fields: object, payload: Buffer | undefined): Promise<Frame> {
    const id = this.nextId++;
    this.idleTimer?.cancel();
    this.idleTimer = undefined;
    return new Promise<Frame>((resolve, reject) => {
      const timer = this.clock.after(this.timeoutMs, () => {
        this.pending.delete(id);
        this.armIdle();
        reject(new SdError('NETWORK', `${this.host}:${this.port} did not answer ${op} in ${this.timeoutMs} ms`));
      });
      this.pending.set(id, { resolve, reject, timer, stream });
      // Corked: the frame's pieces leave in one writev, not a syscall (and a segment) each.
      stream.cork();
      for (const piece of encodeFrame({ ...fields, id, op }, payload)) stream.write(piece);
      stream.uncork();
    });
  }

  private connect(op: Op): Promise<Duplex> {
    // A stream let in before the sheep had a key cannot carry this op: a new one proves the key.
    if (this.stream && this.session === 'unkeyed' && !unkeyedOps.has(op)) {
      this.stream.destroy();
      this.stream = undefined;
    }
    if (this.stream) return Promise.resolve(this.stream);
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<Duplex> {
    const where = `${this.host}:${this.port}`;
    let timer: Timer | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = this.clock.after(rpcConnectTimeoutMs, () => reject(new SdError('NETWORK', `cannot connect to ${where}: timed out`)));
    });
    const connecting = this.transport.connect(this.host, this.port).then(async (stream) => {
      // Never a moment without an error listener: the handshake removes its own when it is
      // done, and a reset before `attach` would otherwise be an uncaught 'error' event (seed 6
      // of the simulator's full mix).
      stream.on('error', () => stream.destroy());
      try {
        const session = this.auth ? await connectSession(stream, where, this.port, this.auth) : 'authenticated';
        return { stream, session };
      } catch (error) {
        stream.destroy();
        throw error;
      }
    });
    let stream: Duplex;
    try {
      const opened = await Promise.race([connecting, timedOut]);
      stream = opened.stream;
      this.session = opened.session;
    } catch (error) {
      // A connection that completes after the timeout is not wanted any more.
      connecting.then((late) => late.stream.destroy(), () => undefined);
      if (error instanceof SdError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      throw new SdError('NETWORK', `cannot connect to ${where}: ${code ?? (error as Error).message}`);
    } finally {
      timer?.cancel();
    }
    if (this.closed) {
      stream.destroy();
      throw new SdError('NETWORK', 'connection closed');
    }
    this.attach(stream);
    return stream;
  }

  private attach(stream: Duplex): void {
    this.stream = stream;
    const decoder = new FrameDecoder();
    stream.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        this.drop(stream, asSdError(error));
        return;
      }
      for (const frame of frames) this.settle(stream, frame);
    });
    stream.on('error', () => stream.destroy());
    stream.on('end', () => stream.destroy());
    stream.on('close', () => this.drop(stream, new SdError('NETWORK', `connection to ${this.host}:${this.port} lost`)));
  }

  private settle(stream: Duplex, frame: Frame): void {
    const id = frame.header['id'];
    if (typeof id !== 'number') return;
    const error = frame.header['ok'] === true ? undefined : errorOf(frame.header);
    // Id 0 answers no request: the server refused the connection (too many, say), and says why.
    if (id === 0 && error) return this.drop(stream, new SdError(error.code, `${this.host}:${this.port} refused the connection: ${error.message}`));
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    pending.timer.cancel();
    this.armIdle();
    if (error) pending.reject(error);
    else pending.resolve(frame);
  }

  /** Forgets a stream and fails the requests sent on it (not those on a newer one). */
  private drop(stream: Duplex, error: SdError): void {
    if (this.stream === stream) {
      this.stream = undefined;
      this.idleTimer?.cancel();
      this.idleTimer = undefined;
    }
    stream.destroy();
    for (const [id, pending] of this.pending) {
      if (pending.stream !== stream) continue;
      pending.timer.cancel();
      pending.reject(error);
      this.pending.delete(id);
    }
  }

  /** With nothing in flight, the connection is closed after a while (the next call reopens it). */
  private armIdle(): void {
    if (this.pending.size > 0 || this.idleTimer || !this.stream) return;
    const stream = this.stream;
    this.idleTimer = this.clock.after(rpcClientIdleTimeoutMs, () => {
      this.idleTimer = undefined;
      if (this.stream === stream && this.pending.size === 0) this.drop(stream, new SdError('NETWORK', 'connection closed'));
    });
  }

  close(): void {
    this.closed = true;
    this.idleTimer?.cancel();
    this.idleTimer = undefined;
    const error = new SdError('NETWORK', 'connection closed');
    if (this.stream) this.drop(this.stream, error);
    for (const [id, pending] of this.pending) {
      pending.timer.cancel();
      pending.reject(error);
      this.pending.delete(id);
    }
  }
}

function errorOf(header: Record<string, unknown>): SdError {
  const { code, message, epoch } = header;
  return new SdError(
    isErrorCode(code) ? code : 'INTERNAL',
    typeof message === 'string' ? message : 'error',
    typeof epoch === 'number' ? epoch : undefined,
  );
}
