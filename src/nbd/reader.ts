// "Read exactly N bytes" over a byte stream, with flow control. Chunks from 'data' events are
// queued as they are; a read that one chunk can satisfy returns a view of it, otherwise the pieces
// are copied once into a buffer of the exact size. The stream is paused while more is buffered than
// any pending read needs, so a client that sends faster than we handle cannot grow our memory.
import type { Duplex } from 'node:stream';
import { SdError } from '../engine/errors.js';

interface Waiter {
  needBytes: number;
  resolve: () => void;
  reject: (error: SdError) => void;
}

export class StreamReader {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffsetBytes = 0;
  private bufferedBytes = 0;
  private waiter: Waiter | null = null;
  private failure: SdError | null = null;
  private paused = false;
  private readonly listeners: Array<[string, Parameters<Duplex['on']>[1]]>;
  /** Set by the caller between the parts of one message (a request's header and its payload). */
  inMessage = false;

  /** Whether part of a message is in and the rest awaited: the read timeout applies. */
  get awaitingRest(): boolean {
    return this.waiter !== null && (this.bufferedBytes > 0 || this.inMessage);
  }

  constructor(
    private readonly stream: Duplex,
    private readonly bufferedBytesMax: number,
  ) {
    this.listeners = [
      ['data', (chunk: Buffer) => this.onData(chunk)],
      ['end', () => this.fail(new SdError('NETWORK', 'client closed the connection'))],
      ['close', () => this.fail(new SdError('NETWORK', 'connection closed'))],
      ['error', (error: Error) => this.fail(new SdError('NETWORK', error.message))],
    ];
    for (const [event, listener] of this.listeners) stream.on(event, listener);
  }

  /** Resolves with exactly lengthBytes bytes; the caller has already bounded lengthBytes. */
  async readExactly(lengthBytes: number): Promise<Buffer> {
    if (this.bufferedBytes < lengthBytes) await this.waitFor(lengthBytes);
    return this.take(lengthBytes);
  }

  /** Consumes and drops lengthBytes bytes without holding them all at once. */
  async skip(lengthBytes: number): Promise<void> {
    let remainingBytes = lengthBytes;
    while (remainingBytes > 0) {
      if (this.bufferedBytes === 0) await this.waitFor(1);
      const dropBytes = Math.min(remainingBytes, this.bufferedBytes);
      this.drop(dropBytes);
      remainingBytes -= dropBytes;
    }
  }

  /**
   * Hands the stream over to someone else (STARTTLS): stops listening and pauses it, so what
   * arrives next stays in the stream for the new owner. Returns how many bytes were buffered and
   * unread; they are dropped. Later reads fail. Call only with no read pending.
   */
  detach(): number {
    for (const [event, listener] of this.listeners) this.stream.off(event, listener);
    this.stream.pause();
    const unreadBytes = this.bufferedBytes;
    this.chunks.length = 0;
    this.bufferedBytes = 0;
    this.fail(new SdError('PROTOCOL', 'the connection moved to TLS'));
    return unreadBytes;
  }

  /** Stops reading for good: pending and later reads fail with `reason`. */
  close(reason: SdError): void {
    this.fail(reason);
  }

  private waitFor(needBytes: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiter) throw new Error('StreamReader: only one read may be pending');
    return new Promise<void>((resolve, reject) => {
      this.waiter = { needBytes, resolve, reject };
      this.updateFlow();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.failure || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    const waiter = this.waiter;
    if (waiter && this.bufferedBytes >= waiter.needBytes) {
      this.waiter = null;
      waiter.resolve();
    }
    this.updateFlow();
  }

  private fail(reason: SdError): void {
    if (this.failure) return;
    this.failure = reason;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(reason);
  }

  /** Pause while buffered input exceeds both the limit and what the pending read still needs. */
  private updateFlow(): void {
    const wantBytes = Math.max(this.bufferedBytesMax, this.waiter?.needBytes ?? 0);
    const shouldPause = this.bufferedBytes >= wantBytes;
    if (shouldPause && !this.paused) this.stream.pause();
    if (!shouldPause && this.paused) this.stream.resume();
    this.paused = shouldPause;
  }

  private take(lengthBytes: number): Buffer {
    const head = this.chunks[0];
    if (head && head.length - this.headOffsetBytes >= lengthBytes) {
      const view = head.subarray(this.headOffsetBytes, this.headOffsetBytes + lengthBytes);
      this.drop(lengthBytes);
      return view;
    }
    const target = Buffer.allocUnsafe(lengthBytes);
    let filledBytes = 0;
    while (filledBytes < lengthBytes) {
      const chunk = this.chunks[0]!;
      const copiedBytes = chunk.copy(
        target,
        filledBytes,
        this.headOffsetBytes,
        Math.min(chunk.length, this.headOffsetBytes + lengthBytes - filledBytes),
      );
      this.drop(copiedBytes);
      filledBytes += copiedBytes;
    }
    return target;
  }

  private drop(lengthBytes: number): void {
    let remainingBytes = lengthBytes;
    while (remainingBytes > 0) {
      const head = this.chunks[0]!;
      const availableBytes = head.length - this.headOffsetBytes;
      if (availableBytes > remainingBytes) {
        this.headOffsetBytes += remainingBytes;
        break;
      }
      this.chunks.shift();
      this.headOffsetBytes = 0;
      remainingBytes -= availableBytes;
    }
    this.bufferedBytes -= lengthBytes;
    this.updateFlow();
  }
}
