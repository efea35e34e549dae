// Frames out to the client. Each frame (header plus optional payload views) is handed to the socket
// in one synchronous call sequence, and Node keeps writes in call order, so frames of replies that
// complete concurrently can never interleave. Payloads are written as they are, never concatenated.
import type { Duplex } from 'node:stream';
import { SdError } from '../engine/errors.js';

export class FrameWriter {
  private closed = false;

  constructor(private readonly stream: Duplex) {
    stream.on('close', () => {
      this.closed = true;
    });
  }

  get isClosed(): boolean {
    return this.closed || this.stream.destroyed || this.stream.writableEnded;
  }

  /** Resolves once the frame is handed to the OS, which is what throttles a slow reader of ours. */
  send(parts: readonly Buffer[]): Promise<void> {
    if (this.isClosed) return Promise.reject(new SdError('NETWORK', 'connection closed'));
    return new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null): void => {
        if (error) reject(new SdError('NETWORK', error.message));
        else resolve();
      };
      this.stream.cork();
      parts.forEach((part, index) => {
        if (index === parts.length - 1) this.stream.write(part, done);
        else this.stream.write(part);
      });
      this.stream.uncork();
    });
  }

  /** Ends the stream once everything written so far is flushed (a soft close). */
  end(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    this.closed = true;
    return new Promise<void>((resolve) => this.stream.end(resolve));
  }
}
