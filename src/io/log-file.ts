// The sheep's log file as pino's destination: it never blocks and never throws. pino's own
// destination (sonic-boom) turned ENOSPC on the store's filesystem into an uncaught exception,
// and the fatal path then retried the write forever: a full disk hung the daemon. Here a line
// goes into a bounded queue written by one async write at a time; on a failed write the lines
// are dropped and counted, and every `retryMs` one notice line tries the file again, so the log
// resumes by itself once space is freed.
import * as fs from 'node:fs';

/** Bytes of log lines queued for the file, at most; more are dropped (and counted). */
export const logQueueBytesMax = 4 * 1024 * 1024;
/** How often a log that could not write tries again. */
export const logRetryMs = 1000;

export interface LogFile {
  /** pino's destination interface: takes one serialized line (with its newline). */
  write(line: string): boolean;
  /** Calls back once the queue is written or dropped; never waits on a failing disk. */
  flush(callback?: (error?: Error) => void): void;
  /** One synchronous attempt at what is queued (the exit path); failures drop it. */
  flushSync(): void;
  /** Lines dropped since the file last took a write. */
  readonly droppedLines: number;
}

export function openLogFile(file: string, retryMs = logRetryMs): LogFile {
  return new QueuedLogFile(file, retryMs);
}

class QueuedLogFile implements LogFile {
  private fd: number | undefined;
  private queue: string[] = [];
  private queuedBytes = 0;
  private writing = false;
  /** Set while the file refuses writes: what it said, and when to try again. */
  private fault: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** A write stopped in the middle of a line: the next one starts on a new line. */
  private tornLine = false;
  droppedLines = 0;
  private flushWaiters: Array<(error?: Error) => void> = [];

  constructor(
    private readonly file: string,
    private readonly retryMs: number,
  ) {
    this.open();
  }

  write(line: string): boolean {
    if (this.fault !== undefined || this.queuedBytes + line.length > logQueueBytesMax) {
      this.droppedLines += 1;
      return true;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    this.pump();
    return true;
  }

  flush(callback?: (error?: Error) => void): void {
    if (!callback) return;
    if (!this.writing && this.queue.length === 0) callback();
    else this.flushWaiters.push(callback);
  }

  flushSync(): void {
    // With a write in flight this one may land first (both append): only on the way out.
    if (this.fd === undefined || this.queue.length === 0) return;
    const text = this.takeQueue();
    try {
      fs.writeSync(this.fd, text);
    } catch {
      this.droppedLines += lineCount(text);
    }
  }

  private open(): boolean {
    try {
      this.fd ??= fs.openSync(this.file, 'a', 0o644);
      return true;
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  private takeQueue(): string {
    const text = this.queue.join('');
    this.queue = [];
    this.queuedBytes = 0;
    return text;
  }

  private pump(): void {
    if (this.writing || this.fault !== undefined || this.queue.length === 0 || this.fd === undefined) return;
    this.writing = true;
    this.writeOut(Buffer.from(this.takeQueue()));
  }

  private writeOut(bytes: Buffer): void {
    fs.write(this.fd!, bytes, 0, bytes.length, null, (error, written) => {
      if (error) {
        this.droppedLines += lineCount(bytes.toString());
        this.writing = false;
        this.fail(error);
        this.settleFlush();
        return;
      }
      if (written < bytes.length) {
        this.tornLine = true;
        this.writeOut(bytes.subarray(written));
        return;
      }
      this.tornLine = false;
      this.writing = false;
      if (this.queue.length > 0) this.pump();
      else this.settleFlush();
    });
  }

  private settleFlush(): void {
    for (const waiter of this.flushWaiters.splice(0)) waiter();
  }

  /** The file refuses writes: drop what is queued, and try again with a notice later. */
  private fail(error: unknown): void {
    this.fault = (error as NodeJS.ErrnoException).code ?? String(error);
    this.droppedLines += lineCount(this.takeQueue());
    if (this.retryTimer === undefined) {
      this.retryTimer = setTimeout(() => this.retry(), this.retryMs);
      this.retryTimer.unref(); // a failing log never keeps the process alive
    }
  }

  private retry(): void {
    this.retryTimer = undefined;
    if (!this.open()) return;
    const notice = `${JSON.stringify({ level: 40, time: Date.now(), msg: 'log lines dropped', dropped: this.droppedLines, reason: this.fault })}\n`;
    const text = `${this.tornLine ? '\n' : ''}${notice}`;
    this.fault = undefined;
    this.writing = true;
    fs.write(this.fd!, text, null, 'utf8', (error) => {
      this.writing = false;
      if (error) {
        this.fail(error);
        return;
      }
      this.tornLine = false;
      this.droppedLines = 0;
      this.pump();
    });
  }
}

function lineCount(text: string): number {
  let lines = 0;
  for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) lines += 1;
  return lines;
}
