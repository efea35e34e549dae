// Which objects each gateway node wrote to this replica lately. A write is acknowledged only when
// every replica has it, so if its gateway dies mid-write some replicas may have it and others not;
// nobody is left to retry it. When a gateway leaves, the objects it wrote within the window are
// suspects: recovery makes their copies agree before serving them again (recovery.ts).
import type { Oid } from '../engine/oid.js';

interface GatewayWrites {
  /** oid → when it was last written, oldest first (a re-write moves it to the end). */
  readonly oids: Map<Oid, number>;
  /**
   * Until then every copy is a suspect: more objects were written within one window than are
   * tracked, and the ones dropped are not known.
   */
  overflowUntilMs: number;
}

export class RecentWrites {
  private readonly byGateway = new Map<string, GatewayWrites>();

  /**
   * @param windowMs how long after a write its outcome may still be open (a replica's request
   *   timeout plus the gateway's retry on the next epoch): older writes either finished or were
   *   retried by their gateway.
   * @param perGatewayMax objects tracked per gateway; past it, the gateway's writes all count.
   */
  constructor(
    private readonly windowMs: number,
    private readonly perGatewayMax: number,
  ) {}

  note(gateway: string, oid: Oid, nowMs: number): void {
    let writes = this.byGateway.get(gateway);
    if (!writes) {
      writes = { oids: new Map(), overflowUntilMs: -Infinity };
      this.byGateway.set(gateway, writes);
    }
    writes.oids.delete(oid);
    writes.oids.set(oid, nowMs);
    this.expire(writes, nowMs);
    if (writes.oids.size > this.perGatewayMax) {
      writes.overflowUntilMs = nowMs + this.windowMs;
      writes.oids.clear();
    }
  }

  /** The suspects a departed gateway leaves ('all' after an overflow); forgets the gateway. */
  take(gateway: string, nowMs: number): Set<Oid> | 'all' {
    const writes = this.byGateway.get(gateway);
    this.byGateway.delete(gateway);
    if (!writes) return new Set();
    if (nowMs <= writes.overflowUntilMs) return 'all';
    this.expire(writes, nowMs);
    return new Set(writes.oids.keys());
  }

  private expire(writes: GatewayWrites, nowMs: number): void {
    for (const [oid, atMs] of writes.oids) {
      if (nowMs - atMs <= this.windowMs) break;
      writes.oids.delete(oid);
    }
  }
}
