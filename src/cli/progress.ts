// Progress of a long transfer on stderr (bytes, rate, ETA), only when stderr is a terminal: a
// pipe or a log file gets nothing. Redrawn at most every `redrawMs`.
import { formatSize } from '../engine/size.js';

const redrawMs = 250;

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const hms = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  return (hms[0]! > 0 ? hms : hms.slice(1)).map((n, i) => (i === 0 ? String(n) : String(n).padStart(2, '0'))).join(':');
}

/** One progress line: `12 MB / 64 MB  10 MB/s  ETA 0:05`. */
export function progressLine(doneBytes: number, totalBytes: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (doneBytes * 1000) / elapsedMs : 0;
  const eta = rate > 0 ? Math.max(0, totalBytes - doneBytes) / rate : Infinity;
  return `${formatSize(doneBytes)} / ${formatSize(totalBytes)}  ${formatSize(Math.round(rate))}/s  ETA ${clock(eta)}`;
}

export class Progress {
  private readonly startMs = Date.now();
  private drawnMs = 0;
  private done = 0;
  private readonly shown: boolean;

  constructor(
    private readonly label: string,
    private total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.shown = stream.isTTY === true;
  }

  setTotal(total: number): void {
    this.total = total;
  }

  add(bytes: number): void {
    this.done += bytes;
    if (!this.shown) return;
    const now = Date.now();
    if (now - this.drawnMs < redrawMs) return;
    this.drawnMs = now;
    this.stream.write(`\r\x1b[K${this.label}: ${progressLine(this.done, this.total, now - this.startMs)}`);
  }

  end(): void {
    if (!this.shown) return;
    this.stream.write(`\r\x1b[K${this.label}: ${progressLine(this.done, this.total, Date.now() - this.startMs)}\n`);
  }
}
