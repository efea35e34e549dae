// The one rpc client: typed calls to one sheep over one multiplexed stream from a Transport, many
// requests in flight, matched by id. Reconnects lazily after a failure.
import type { Duplex } from 'node:stream';
import { SdError, asSdError, isErrorCode } from '../engine/errors.js';
import { rpcConnectTimeoutMs, rpcInflightRequestsMax, rpcRequestTimeoutMs } from '../engine/limits.js';
import type { Clock, Timer } from '../io/clock.js';
import type { Transport } from '../io/transport.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';
import { protocol, type Op, type PayloadArgs, type RequestFields, type ResultOf } from './protocol.js';

interface Pending {
  resolve(frame: Frame): void;
  reject(error: SdError): void;
  timer: Timer;
}

export interface RpcClientOptions {
  transport: Transport;
  clock: Clock;
  host: string;
  port: number;
  timeoutMs?: number;
}

export class RpcClient {
  readonly host: string;
  readonly port: number;
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private stream: Duplex | undefined;
  private connecting: Promise<Duplex> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(options: RpcClientOptions) {
    this.transport = options.transport;
    this.clock = options.clock;
    this.host = options.host;
    this.port = options.port;
    this.timeoutMs = options.timeoutMs ?? rpcRequestTimeoutMs;
  }

  /** Sends one request; resolves with the op's result (for data-answering ops, the data). */
  async call<K extends Op>(op: K, fields: RequestFields<K>, ...payload: PayloadArgs<K>): Promise<ResultOf<K>> {
    const frame = await this.send(op, fields, payload[0]);
    // The server answers each op with the result the protocol declares for it.
    const data = frame.payload ?? Buffer.alloc(0);
    const kind = protocol[op].payload;
    const result = kind === 'reply' ? data : kind === 'valueAndData' ? { value: frame.header['value'], data } : frame.header['value'];
    return result as ResultOf<K>;
  }

  private async send(op: Op, fields: object, payload: Buffer | undefined): Promise<Frame> {
    if (this.closed) throw new SdError('NETWORK', 'connection closed');
    if (this.pending.size >= rpcInflightRequestsMax) throw new SdError('BUSY', 'too many requests in flight');
    const stream = await this.connect();
    const id = this.nextId++;
    return new Promise<Frame>((resolve, reject) => {
      const timer = this.clock.after(this.timeoutMs, () => {
        this.pending.delete(id);
        reject(new SdError('NETWORK', `${this.host}:${this.port} did not answer ${op} in ${this.timeoutMs} ms`));
      });
      this.pending.set(id, { resolve, reject, timer });
      for (const piece of encodeFrame({ ...fields, id, op }, payload)) stream.write(piece);
    });
  }

  private connect(): Promise<Duplex> {
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
    const connecting = this.transport.connect(this.host, this.port);
    let stream: Duplex;
    try {
      stream = await Promise.race([connecting, timedOut]);
    } catch (error) {
      // A connection that completes after the timeout is not wanted any more.
      connecting.then((late) => late.destroy(), () => undefined);
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
        stream.destroy();
        this.failAll(asSdError(error));
        return;
      }
      for (const frame of frames) this.settle(frame);
    });
    stream.on('error', () => stream.destroy());
    stream.on('end', () => stream.destroy());
    stream.on('close', () => {
      if (this.stream === stream) this.stream = undefined;
      this.failAll(new SdError('NETWORK', `connection to ${this.host}:${this.port} lost`));
    });
  }

  private settle(frame: Frame): void {
    const id = frame.header['id'];
    if (typeof id !== 'number') return;
    // Id 0 is never a request's: the server refuses the connection itself (too many connections).
    if (id === 0 && frame.header['ok'] === false) {
      this.failAll(errorOf(frame.header));
      this.stream?.destroy();
      return;
    }
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    pending.timer.cancel();
    if (frame.header['ok'] === true) {
      pending.resolve(frame);
      return;
    }
    pending.reject(errorOf(frame.header));
  }

  private failAll(error: SdError): void {
    for (const [id, pending] of this.pending) {
      pending.timer.cancel();
      pending.reject(error);
      this.pending.delete(id);
    }
  }

  close(): void {
    this.closed = true;
    this.stream?.destroy();
    this.failAll(new SdError('NETWORK', 'connection closed'));
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
