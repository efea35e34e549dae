// Request/response over one TCP connection, many requests in flight, matched by id.
import * as net from 'node:net';
import { SdError, isErrorCode, asSdError } from '../engine/errors.js';
import { rpcConnectTimeoutMs, rpcInflightRequestsMax, rpcRequestTimeoutMs } from '../engine/limits.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';

export interface Reply {
  value: unknown;
  payload: Buffer | undefined;
}

interface Pending {
  resolve(reply: Reply): void;
  reject(error: SdError): void;
  timer: NodeJS.Timeout;
}

/** A client connection to one sheep. Reconnects lazily after a failure. */
export class RpcClient {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly timeoutMs = rpcRequestTimeoutMs,
  ) {}

  async call(op: string, args: object = {}, payload?: Buffer): Promise<Reply> {
    if (this.closed) throw new SdError('NETWORK', 'connection closed');
    if (this.pending.size >= rpcInflightRequestsMax) throw new SdError('BUSY', 'too many requests in flight');
    const socket = await this.connect();
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SdError('NETWORK', `${this.host}:${this.port} did not answer ${op} in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      for (const piece of encodeFrame({ ...args, id, op }, payload)) socket.write(piece);
    });
  }

  private connect(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ host: this.host, port: this.port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SdError('NETWORK', `cannot connect to ${this.host}:${this.port}: timed out`));
      }, rpcConnectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        this.socket = socket;
        this.connecting = undefined;
        resolve(socket);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        this.connecting = undefined;
        reject(new SdError('NETWORK', `cannot connect to ${this.host}:${this.port}: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
      });
      const decoder = new FrameDecoder();
      socket.on('data', (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch (error) {
          socket.destroy();
          this.failAll(asSdError(error));
          return;
        }
        for (const frame of frames) this.settle(frame);
      });
      socket.on('close', () => {
        if (this.socket === socket) this.socket = undefined;
        this.failAll(new SdError('NETWORK', `connection to ${this.host}:${this.port} lost`));
      });
    });
    return this.connecting;
  }

  private settle(frame: Frame): void {
    const id = frame.header['id'];
    if (typeof id !== 'number') return;
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (frame.header['ok'] === true) {
      pending.resolve({ value: frame.header['value'], payload: frame.payload });
    } else {
      const code = frame.header['code'];
      const message = frame.header['message'];
      pending.reject(new SdError(isErrorCode(code) ? code : 'INTERNAL', typeof message === 'string' ? message : 'error'));
    }
  }

  private failAll(error: SdError): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this.pending.delete(id);
    }
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
    this.failAll(new SdError('NETWORK', 'connection closed'));
  }
}

export type Handler = (header: Record<string, unknown>, payload: Buffer | undefined) => Promise<Reply>;

/**
 * Serves frames on a socket: each request runs concurrently; a malformed stream closes only that
 * connection. A handler's SdError becomes an error reply; anything else is a bug and is logged.
 */
export function serveConnection(
  socket: net.Socket,
  handle: Handler,
  onBug: (error: unknown) => void,
): void {
  socket.setNoDelay(true);
  const decoder = new FrameDecoder();
  let inflight = 0;
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    let frames: Frame[];
    try {
      frames = decoder.push(chunk);
    } catch {
      socket.destroy();
      return;
    }
    for (const frame of frames) {
      const id = frame.header['id'];
      if (typeof id !== 'number') {
        socket.destroy();
        return;
      }
      inflight += 1;
      if (inflight >= rpcInflightRequestsMax) socket.pause();
      handle(frame.header, frame.payload)
        .then(
          (reply) => encodeFrame({ id, ok: true, value: reply.value }, reply.payload),
          (error: unknown) => {
            let sd: SdError;
            try {
              sd = asSdError(error);
            } catch (bug) {
              onBug(bug);
              sd = new SdError('INTERNAL', 'internal error');
            }
            return encodeFrame({ id, ok: false, code: sd.code, message: sd.message });
          },
        )
        .then((pieces) => {
          if (!socket.destroyed) for (const piece of pieces) socket.write(piece);
        })
        .catch(onBug)
        .finally(() => {
          inflight -= 1;
          if (inflight < rpcInflightRequestsMax && socket.isPaused()) socket.resume();
        });
    }
  });
}
