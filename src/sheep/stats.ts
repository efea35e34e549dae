// Request counters of one sheep, as plain numbers (the original's `struct sd_stat`): what
// `dog node stat` shows and what a metrics exporter can read. Pure: callers say when a request
// starts and ends and how many bytes it moved; nothing here reads a clock or does I/O.

/** Counters of one class of requests: from clients (gateway) or from other sheep (peer). */
export interface RequestCounters {
  /** Requests being served now. */
  active: number;
  /** Requests served or being served since the sheep started. */
  total: number;
  write: number;
  read: number;
  remove: number;
  flush: number;
  /** Payload bytes received (written to us) and sent (read from us). */
  receivedBytes: number;
  sentBytes: number;
}

export interface RequestStatsData {
  client: RequestCounters;
  peer: RequestCounters;
}

export type RequestKind = 'write' | 'read' | 'remove' | 'flush' | 'other';
export type RequestSource = keyof RequestStatsData;

export function emptyCounters(): RequestCounters {
  return { active: 0, total: 0, write: 0, read: 0, remove: 0, flush: 0, receivedBytes: 0, sentBytes: 0 };
}

/** The source and kind of an rpc op, or undefined for ops that are not object I/O. */
export function classifyOp(op: unknown): { source: RequestSource; kind: RequestKind } | undefined {
  switch (op) {
    case 'gw.read':
      return { source: 'client', kind: 'read' };
    case 'gw.write':
      return { source: 'client', kind: 'write' };
    case 'gw.remove':
      return { source: 'client', kind: 'remove' };
    case 'peer.read':
      return { source: 'peer', kind: 'read' };
    case 'peer.write':
      return { source: 'peer', kind: 'write' };
    case 'peer.remove':
      return { source: 'peer', kind: 'remove' };
    default:
      return undefined;
  }
}

export class RequestStats {
  private readonly counters: RequestStatsData = { client: emptyCounters(), peer: emptyCounters() };

  /** A request starts: counted at once, so `active` shows it while it is served. */
  begin(source: RequestSource, kind: RequestKind, receivedBytes: number): void {
    const c = this.counters[source];
    c.active += 1;
    c.total += 1;
    if (kind !== 'other') c[kind] += 1;
    c.receivedBytes += receivedBytes;
  }

  /** The request ended (answered or failed), having sent `sentBytes` of payload. */
  end(source: RequestSource, sentBytes: number): void {
    const c = this.counters[source];
    if (c.active <= 0) throw new Error(`request stats: end without begin (${source})`);
    c.active -= 1;
    c.sentBytes += sentBytes;
  }

  /** Counts `work` as one request of `kind`, with the bytes its result says it moved. */
  async count<T>(source: RequestSource, kind: RequestKind, receivedBytes: number, work: () => Promise<T>, sent: (result: T) => number): Promise<T> {
    this.begin(source, kind, receivedBytes);
    let sentBytes = 0;
    try {
      const result = await work();
      sentBytes = sent(result);
      return result;
    } finally {
      this.end(source, sentBytes);
    }
  }

  /** A copy: callers may keep it while the counters move on. */
  snapshot(): RequestStatsData {
    return { client: { ...this.counters.client }, peer: { ...this.counters.peer } };
  }
}
