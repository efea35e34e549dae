// Epoch fencing checked from the outside, on the simulated wire: a sheep-to-sheep request (its
// header carries the sender's epoch) that reaches a sheep already on a newer epoch must be
// refused, so no replica write is ever applied under an epoch older than the receiver's. The
// oracle reads the frame headers of every delivered chunk (payloads are skipped, not copied),
// notes the receiver's epoch when a request's last byte lands, and reports a violation when the
// reply to such a request says ok. Epochs only grow, so a receiver that was newer then is newer
// when it admits the request.
import { framePrefixBytes, unpackHeader } from '../rpc/frame.js';

/** Cuts one direction of a connection into frames, keeping only their headers. */
class HeaderPeek {
  private prefix = Buffer.alloc(framePrefixBytes);
  private prefixHave = 0;
  private header: Buffer | undefined;
  private headerBytes = 0;
  private headerHave = 0;
  private skipLeft = 0;
  private parsed: unknown;
  /** Lost track of the stream (a frame the rpc layer would refuse too): stop looking. */
  broken = false;

  push(chunk: Buffer, onFrame: (header: unknown) => void): void {
    let at = 0;
    while (at < chunk.length && !this.broken) {
      if (this.prefixHave < framePrefixBytes) {
        const n = Math.min(framePrefixBytes - this.prefixHave, chunk.length - at);
        chunk.copy(this.prefix, this.prefixHave, at, at + n);
        this.prefixHave += n;
        at += n;
        if (this.prefixHave < framePrefixBytes) return;
        const frameBytes = this.prefix.readUInt32BE(0);
        const headerBytes = this.prefix.readUInt32BE(4);
        if (headerBytes === 0 || headerBytes + 4 > frameBytes) {
          this.broken = true;
          return;
        }
        this.header = undefined; // taken in place if it comes in one piece (encodeFrame writes it so)
        this.headerBytes = headerBytes;
        this.headerHave = 0;
        this.skipLeft = frameBytes - 4 - headerBytes;
        this.parsed = undefined;
      }
      if (this.headerHave < this.headerBytes) {
        const n = Math.min(this.headerBytes - this.headerHave, chunk.length - at);
        if (n === 0) return;
        if (this.headerHave === 0 && n === this.headerBytes) this.header = chunk.subarray(at, at + n);
        else chunk.copy((this.header ??= Buffer.alloc(this.headerBytes)), this.headerHave, at, at + n);
        this.headerHave += n;
        at += n;
        if (this.headerHave < this.headerBytes) return;
        try {
          this.parsed = unpackHeader(this.header);
        } catch {
          this.broken = true;
          return;
        }
      }
      const n = Math.min(this.skipLeft, chunk.length - at);
      this.skipLeft -= n;
      at += n;
      if (this.skipLeft > 0) return;
      this.prefixHave = 0;
      this.header = undefined;
      this.headerBytes = 0;
      this.headerHave = 0;
      onFrame(this.parsed);
    }
  }
}

interface Stale {
  op: string;
  requestEpoch: number;
  receiverEpoch: number;
  from: string;
  to: string;
}

export class EpochOracle {
  readonly violations: string[] = [];
  private readonly pipes = new Map<string, HeaderPeek>();
  /** Requests that reached a newer receiver, by `connection:id`, until their reply. */
  private readonly stale = new Map<string, Stale>();

  constructor(private readonly epochOf: (host: string) => number | undefined) {}

  onChunk(connectionId: number, toServer: boolean, toHost: string, chunk: Buffer): void {
    const key = `${connectionId}${toServer ? '>' : '<'}`;
    let peek = this.pipes.get(key);
    if (!peek) {
      peek = new HeaderPeek();
      this.pipes.set(key, peek);
    }
    peek.push(chunk, (header) => (toServer ? this.onRequest(connectionId, toHost, header) : this.onReply(connectionId, header)));
  }

  onClose(connectionId: number): void {
    this.pipes.delete(`${connectionId}>`);
    this.pipes.delete(`${connectionId}<`);
    for (const key of this.stale.keys()) if (key.startsWith(`${connectionId}:`)) this.stale.delete(key);
  }

  private onRequest(connectionId: number, toHost: string, header: unknown): void {
    const h = header as Record<string, unknown> | undefined;
    const { op, epoch, from, id } = h ?? {};
    if (typeof op !== 'string' || !op.startsWith('peer.') || typeof epoch !== 'number' || typeof id !== 'number') return;
    const receiverEpoch = this.epochOf(toHost);
    if (receiverEpoch === undefined || receiverEpoch <= epoch) return;
    this.stale.set(`${connectionId}:${id}`, { op, requestEpoch: epoch, receiverEpoch, from: String(from), to: toHost });
  }

  private onReply(connectionId: number, header: unknown): void {
    const h = header as Record<string, unknown> | undefined;
    if (typeof h?.['id'] !== 'number') return;
    const key = `${connectionId}:${h['id']}`;
    const stale = this.stale.get(key);
    if (!stale) return;
    this.stale.delete(key);
    if (h['ok'] === true) {
      this.violations.push(
        `${stale.op} from ${stale.from} at epoch ${stale.requestEpoch} was served by ${stale.to}, already at epoch ${stale.receiverEpoch}`,
      );
    }
  }
}
