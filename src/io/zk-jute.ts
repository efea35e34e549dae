// The few records of ZooKeeper's wire protocol (jute) our client sends and reads: big-endian ints
// and longs, length-prefixed buffers and strings, counted vectors. Pure byte work, no sockets;
// the client (zk-client.ts) frames each packet with its own 4-byte length.

/** Operation codes (org.apache.zookeeper.ZooDefs.OpCode). */
export const zkOp = {
  create: 1,
  delete: 2,
  exists: 3,
  getData: 4,
  getChildren: 8,
  sync: 9,
  ping: 11,
  closeSession: -11,
} as const;

/** Reserved xids: a watch notification and a ping reply. */
export const zkXid = { notification: -1, ping: -2 } as const;

/** Create flags (CreateMode). */
export const zkCreateFlags = { persistent: 0, ephemeral: 1, sequential: 2 } as const;

/** Watch event types (Watcher.Event.EventType). */
export const zkWatchType = { created: 1, deleted: 2, dataChanged: 3, childrenChanged: 4 } as const;

/** The error codes we act on (KeeperException.Code), and their names for messages. */
export const zkErrorNames: Readonly<Record<number, string>> = {
  [-1]: 'SYSTEMERROR',
  [-4]: 'CONNECTIONLOSS',
  [-5]: 'MARSHALLINGERROR',
  [-6]: 'UNIMPLEMENTED',
  [-7]: 'OPERATIONTIMEOUT',
  [-8]: 'BADARGUMENTS',
  [-101]: 'NONODE',
  [-102]: 'NOAUTH',
  [-103]: 'BADVERSION',
  [-108]: 'NOCHILDRENFOREPHEMERALS',
  [-110]: 'NODEEXISTS',
  [-111]: 'NOTEMPTY',
  [-112]: 'SESSIONEXPIRED',
  [-114]: 'INVALIDACL',
  [-118]: 'SESSIONMOVED',
  [-119]: 'NOTREADONLY',
};
export const zkErr = { connectionLoss: -4, noNode: -101, nodeExists: -110, sessionExpired: -112 } as const;

/** Grows as it is written; `finish` prefixes the packet with its length. */
export class JuteWriter {
  private parts: Buffer[] = [];

  int(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(value);
    this.parts.push(b);
    return this;
  }

  long(value: bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigInt64BE(value);
    this.parts.push(b);
    return this;
  }

  bool(value: boolean): this {
    this.parts.push(Buffer.from([value ? 1 : 0]));
    return this;
  }

  buffer(value: Buffer | null): this {
    if (value === null) return this.int(-1);
    this.int(value.length);
    this.parts.push(value);
    return this;
  }

  string(value: string): this {
    return this.buffer(Buffer.from(value, 'utf8'));
  }

  /** The world-readable, world-writable ACL (OPEN_ACL_UNSAFE): the cluster key guards the data. */
  openAcl(): this {
    return this.int(1).int(31).string('world').string('anyone');
  }

  finish(): Buffer {
    const body = Buffer.concat(this.parts);
    const length = Buffer.allocUnsafe(4);
    length.writeInt32BE(body.length);
    return Buffer.concat([length, body]);
  }
}

/** Thrown on a packet shorter than its records: the server speaks something else. */
export class JuteError extends Error {}

export class JuteReader {
  private offset = 0;

  constructor(private readonly data: Buffer) {}

  private need(bytes: number): void {
    if (this.offset + bytes > this.data.length) throw new JuteError(`truncated ZooKeeper packet (${this.data.length} bytes)`);
  }

  int(): number {
    this.need(4);
    const value = this.data.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  long(): bigint {
    this.need(8);
    const value = this.data.readBigInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  bool(): boolean {
    this.need(1);
    return this.data[this.offset++] !== 0;
  }

  buffer(): Buffer | null {
    const length = this.int();
    if (length < 0) return null;
    this.need(length);
    const value = this.data.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  string(): string {
    return (this.buffer() ?? Buffer.alloc(0)).toString('utf8');
  }

  strings(): string[] {
    const count = this.int();
    if (count < 0) return [];
    // Each string takes at least its 4-byte length: a count the packet cannot hold is garbage.
    if (count > (this.data.length - this.offset) / 4) throw new JuteError(`ZooKeeper vector of ${count} in a short packet`);
    return Array.from({ length: count }, () => this.string());
  }

  /** A Stat record (68 bytes): only skipped, nothing we do needs it. */
  skipStat(): void {
    this.need(68);
    this.offset += 68;
  }

  get remaining(): number {
    return this.data.length - this.offset;
  }
}

export interface ConnectRequest {
  lastZxidSeen: bigint;
  timeoutMs: number;
  sessionId: bigint;
  password: Buffer;
}

export function encodeConnect(request: ConnectRequest): Buffer {
  return new JuteWriter()
    .int(0) // protocol version
    .long(request.lastZxidSeen)
    .int(request.timeoutMs)
    .long(request.sessionId)
    .buffer(request.password)
    .bool(false) // not read-only
    .finish();
}

export interface ConnectResponse {
  /** 0 or less: the session we asked to resume has expired. */
  timeoutMs: number;
  sessionId: bigint;
  password: Buffer;
}

export function decodeConnect(packet: Buffer): ConnectResponse {
  const r = new JuteReader(packet);
  r.int(); // protocol version
  const timeoutMs = r.int();
  const sessionId = r.long();
  const password = Buffer.from(r.buffer() ?? Buffer.alloc(0));
  return { timeoutMs, sessionId, password };
}

export interface ReplyHeader {
  xid: number;
  zxid: bigint;
  err: number;
}

export function decodeReplyHeader(r: JuteReader): ReplyHeader {
  return { xid: r.int(), zxid: r.long(), err: r.int() };
}

export interface WatchEvent {
  type: number;
  state: number;
  path: string;
}

export function decodeWatchEvent(r: JuteReader): WatchEvent {
  return { type: r.int(), state: r.int(), path: r.string() };
}
