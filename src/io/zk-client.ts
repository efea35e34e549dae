// A small ZooKeeper client: one session over TCP to one server of an ensemble at a time, and only
// the calls the cluster driver needs (create, delete, exists, getData, getChildren, sync, with
// one-shot watches). It keeps the session alive with pings, notices a silent server within two
// thirds of the session timeout, and moves the session to another server of the list, as the
// official clients do; when a server says the session has expired, that is final. Why our own
// client and not a library: docs/zookeeper-driver.md.
import net from 'node:net';
import { SdError } from '../engine/errors.js';
import { systemClock, type Clock, type Timer } from './clock.js';
import {
  decodeConnect,
  decodeReplyHeader,
  decodeWatchEvent,
  encodeConnect,
  JuteReader,
  JuteWriter,
  zkCreateFlags,
  zkErr,
  zkErrorNames,
  zkOp,
  zkXid,
} from './zk-jute.js';

export interface ZkServer {
  host: string;
  port: number;
}

/**
 * `connected`: the session is usable. `disconnected`: no server answers right now; the session
 * may still live (the client keeps trying) and may yet be reported expired. `expired` and
 * `closed` are final.
 */
export type ZkState = 'connected' | 'disconnected' | 'expired' | 'closed';

export type ZkCreateMode = 'persistent' | 'ephemeral' | 'persistent_sequential';

export interface ZkWatchEvent {
  /** zkWatchType: created, deleted, dataChanged, childrenChanged. */
  type: number;
  path: string;
}

export interface ZkSessionOptions {
  servers: readonly ZkServer[];
  sessionTimeoutMs: number;
  /** The first session: give up after this long without one. */
  connectTimeoutMs: number;
  onState(state: ZkState): void;
  onWatch(event: ZkWatchEvent): void;
  clock?: Clock;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/** One ZooKeeper session: what the cluster driver (src/cluster/zookeeper.ts) is written against. */
export interface ZkSession {
  /** The session timeout the server granted (it bounds what a client asks for). */
  readonly timeoutMs: number;
  /** Resolves with the created path (with its sequence number for a sequential node). */
  create(path: string, data: Buffer, mode: ZkCreateMode): Promise<string>;
  /** false when there was nothing to delete. */
  remove(path: string): Promise<boolean>;
  /** `watch`: notify the next creation, deletion or change of `path`. */
  exists(path: string, watch: boolean): Promise<boolean>;
  /** null when the node does not exist. */
  getData(path: string, watch: boolean): Promise<Buffer | null>;
  /** null when the node does not exist. */
  getChildren(path: string, watch: boolean): Promise<string[] | null>;
  /** Brings the server this session talks to up to date with the leader. */
  sync(path: string): Promise<void>;
  /** Ends the session: its ephemeral nodes go at once. */
  close(): Promise<void>;
}

export type ZkConnect = (options: ZkSessionOptions) => Promise<ZkSession>;

/** A ZooKeeper error; `zkCode` is the server's (KeeperException.Code), 0 for a local failure. */
export class ZkError extends SdError {
  constructor(
    readonly zkCode: number,
    message: string,
  ) {
    super(zkCode === zkErr.connectionLoss || zkCode === zkErr.sessionExpired ? 'NETWORK' : 'INTERNAL', message);
    this.name = 'ZkError';
  }
}

/** The server's packets above this are refused (ZooKeeper's own jute.maxbuffer is 1 MiB). */
const packetBytesMax = 16 * 1024 * 1024;
/** Requests in flight on one session. */
const pendingMax = 4096;
const closeWaitMs = 1000;
const retryDelayMinMs = 100;
const retryDelayMaxMs = 1000;

export function formatServers(servers: readonly ZkServer[]): string {
  return servers.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)).join(',');
}

export const connectZk: ZkConnect = async (options) => {
  const client = new ZkClient(options);
  await client.start();
  return client;
};

interface Pending {
  op: number;
  resolve(r: JuteReader | null, err: number): void;
}

type ConnectOutcome = { kind: 'session' } | { kind: 'expired' } | { kind: 'failed'; reason: string };

class ZkClient implements ZkSession {
  timeoutMs: number;
  private readonly clock: Clock;
  private state: ZkState | 'connecting' = 'connecting';
  private sessionId = 0n;
  private password: Buffer = Buffer.alloc(16);
  private lastZxid = 0n;
  private socket: net.Socket | undefined;
  private inbox: Buffer = Buffer.alloc(0);
  private readonly pending = new Map<number, Pending>();
  private nextXid = 1;
  private lastHeardMs = 0;
  private pingTimer: Timer | undefined;
  private silenceTimer: Timer | undefined;
  private serverIndex = 0;
  private reconnecting = false;

  constructor(private readonly options: ZkSessionOptions) {
    this.clock = options.clock ?? systemClock;
    this.timeoutMs = options.sessionTimeoutMs;
    // Spread the sessions of many sheep over the ensemble.
    this.serverIndex = Math.abs(process.pid) % Math.max(1, options.servers.length);
  }

  async start(): Promise<void> {
    const deadlineMs = this.clock.nowMs() + this.options.connectTimeoutMs;
    let reason = 'no server listed';
    for (let round = 0; ; round++) {
      for (let i = 0; i < this.options.servers.length; i++) {
        const outcome = await this.connectOnce(Math.max(1, deadlineMs - this.clock.nowMs()));
        if (outcome.kind === 'session') return;
        if (outcome.kind === 'failed') reason = outcome.reason;
        if (this.state === 'closed') throw new ZkError(zkErr.connectionLoss, 'ZooKeeper session closed while connecting');
        if (this.clock.nowMs() >= deadlineMs) {
          throw new ZkError(zkErr.connectionLoss, `cannot reach ZooKeeper at ${formatServers(this.options.servers)}: ${reason}`);
        }
      }
      await this.clock.sleep(Math.min(retryDelayMaxMs, retryDelayMinMs * 2 ** round));
    }
  }

  // ---- requests ----

  create(path: string, data: Buffer, mode: ZkCreateMode): Promise<string> {
    const flags =
      mode === 'ephemeral' ? zkCreateFlags.ephemeral : mode === 'persistent_sequential' ? zkCreateFlags.sequential : zkCreateFlags.persistent;
    const body = new JuteWriter().string(path).buffer(data).openAcl().int(flags);
    return this.call(zkOp.create, body, path, (r) => r.string());
  }

  async remove(path: string): Promise<boolean> {
    const done = await this.call(zkOp.delete, new JuteWriter().string(path).int(-1), path, () => true, [zkErr.noNode]);
    return done ?? false;
  }

  async exists(path: string, watch: boolean): Promise<boolean> {
    const found = await this.call(zkOp.exists, new JuteWriter().string(path).bool(watch), path, () => true, [zkErr.noNode]);
    return found ?? false;
  }

  getData(path: string, watch: boolean): Promise<Buffer | null> {
    return this.call(zkOp.getData, new JuteWriter().string(path).bool(watch), path, (r) => Buffer.from(r.buffer() ?? Buffer.alloc(0)), [zkErr.noNode]);
  }

  getChildren(path: string, watch: boolean): Promise<string[] | null> {
    return this.call(zkOp.getChildren, new JuteWriter().string(path).bool(watch), path, (r) => r.strings(), [zkErr.noNode]);
  }

  async sync(path: string): Promise<void> {
    await this.call(zkOp.sync, new JuteWriter().string(path), path, () => undefined);
  }

  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'expired') return;
    const wasConnected = this.state === 'connected';
    if (wasConnected) {
      const closing = this.call(zkOp.closeSession, new JuteWriter(), '', () => undefined).catch(() => undefined);
      let timer: Timer | undefined;
      await Promise.race([closing, new Promise<void>((resolve) => (timer = this.clock.after(closeWaitMs, resolve)))]);
      timer?.cancel();
    }
    this.finish('closed');
  }

  /**
   * Sends one request; `decode` reads the reply body. An error code listed in `absentOk` resolves
   * null (a node that is not there is an answer, not a failure).
   */
  private call<T>(op: number, body: JuteWriter, path: string, decode: (r: JuteReader) => T, absentOk: number[] = []): Promise<T | null> & Promise<T> {
    return new Promise<T | null>((resolve, reject) => {
      if (this.state !== 'connected' || this.socket === undefined) {
        reject(this.lostError());
        return;
      }
      if (this.pending.size >= pendingMax) {
        reject(new SdError('BUSY', `more than ${pendingMax} ZooKeeper requests in flight`));
        return;
      }
      const xid = this.nextXid;
      this.nextXid = this.nextXid >= 0x7fffffff ? 1 : this.nextXid + 1;
      this.pending.set(xid, {
        op,
        resolve: (r, err) => {
          if (r === null) reject(this.lostError());
          else if (err === 0) {
            try {
              resolve(decode(r));
            } catch (error) {
              reject(new ZkError(0, `malformed ZooKeeper reply: ${String(error)}`));
            }
          } else if (absentOk.includes(err)) resolve(null);
          else reject(new ZkError(err, `ZooKeeper ${zkErrorNames[err] ?? `error ${err}`} on ${path || 'the session'}`));
        },
      });
      this.socket.write(this.packet(xid, op, body));
    }) as Promise<T | null> & Promise<T>;
  }

  private packet(xid: number, op: number, body: JuteWriter): Buffer {
    const header = new JuteWriter().int(xid).int(op).finish().subarray(4);
    const rest = body.finish().subarray(4);
    const length = Buffer.allocUnsafe(4);
    length.writeInt32BE(header.length + rest.length);
    return Buffer.concat([length, header, rest]);
  }

  private lostError(): ZkError {
    if (this.state === 'expired') return new ZkError(zkErr.sessionExpired, 'the ZooKeeper session has expired');
    if (this.state === 'closed') return new ZkError(zkErr.connectionLoss, 'the ZooKeeper session is closed');
    return new ZkError(zkErr.connectionLoss, 'lost the connection to ZooKeeper');
  }

  // ---- the connection ----

  /** One try on the next server of the list, bounded by `limitMs` and the session timeout. */
  private connectOnce(limitMs: number): Promise<ConnectOutcome> {
    const server = this.options.servers[this.serverIndex % this.options.servers.length]!;
    this.serverIndex += 1;
    const attemptMs = Math.min(limitMs, Math.max(500, Math.floor(this.timeoutMs / 3)));
    return new Promise<ConnectOutcome>((resolve) => {
      const socket = net.connect({ host: server.host, port: server.port });
      socket.setNoDelay(true);
      let settled = false;
      let inbox: Buffer = Buffer.alloc(0);
      const settle = (outcome: ConnectOutcome): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        socket.removeAllListeners('data');
        if (outcome.kind !== 'session') socket.destroy();
        resolve(outcome);
      };
      const timer = this.clock.after(attemptMs, () => settle({ kind: 'failed', reason: `${server.host}:${server.port} did not answer in ${attemptMs} ms` }));
      socket.once('connect', () => {
        socket.write(
          encodeConnect({ lastZxidSeen: this.lastZxid, timeoutMs: this.options.sessionTimeoutMs, sessionId: this.sessionId, password: this.password }),
        );
      });
      socket.on('error', (error: NodeJS.ErrnoException) => settle({ kind: 'failed', reason: error.code === 'ECONNREFUSED' ? 'connection refused' : error.message }));
      socket.on('close', () => settle({ kind: 'failed', reason: `${server.host}:${server.port} closed the connection` }));
      socket.on('data', (chunk: Buffer) => {
        inbox = Buffer.concat([inbox, chunk]);
        if (inbox.length < 4) return;
        const length = inbox.readInt32BE(0);
        if (length < 0 || length > packetBytesMax) return settle({ kind: 'failed', reason: 'not a ZooKeeper server' });
        if (inbox.length < 4 + length) return;
        let response;
        try {
          response = decodeConnect(inbox.subarray(4, 4 + length));
        } catch {
          return settle({ kind: 'failed', reason: 'not a ZooKeeper server' });
        }
        if (this.state === 'closed') return settle({ kind: 'failed', reason: 'closed meanwhile' });
        if (response.timeoutMs <= 0) return settle({ kind: 'expired' });
        const resumed = this.sessionId !== 0n;
        this.sessionId = response.sessionId;
        this.password = response.password;
        this.timeoutMs = response.timeoutMs;
        settle({ kind: 'session' });
        this.adopt(socket, inbox.subarray(4 + length));
        this.options.logger?.info({ server: `${server.host}:${server.port}`, session: this.sessionId.toString(16), timeoutMs: this.timeoutMs, resumed }, 'ZooKeeper session');
      });
    }).then((outcome) => {
      if (outcome.kind === 'expired') this.finish('expired');
      return outcome;
    });
  }

  /** The socket carries the session from now on. */
  private adopt(socket: net.Socket, rest: Buffer): void {
    this.socket = socket;
    this.inbox = Buffer.from(rest);
    this.lastHeardMs = this.clock.nowMs();
    const wasStarting = this.state === 'connecting';
    this.state = 'connected';
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.onLost(socket));
    // Pings at a third of the timeout; a server silent for two thirds is given up, so the session
    // moves elsewhere (or this node fences itself) before the ensemble expires it.
    this.pingTimer = this.clock.every(Math.max(100, Math.floor(this.timeoutMs / 3)), () => this.ping());
    this.silenceTimer = this.clock.every(Math.max(50, Math.floor(this.timeoutMs / 10)), () => {
      if (this.clock.nowMs() - this.lastHeardMs > (this.timeoutMs * 2) / 3) socket.destroy();
    });
    if (!wasStarting) this.options.onState('connected');
  }

  private ping(): void {
    if (this.state !== 'connected' || this.socket === undefined) return;
    this.socket.write(this.packet(zkXid.ping, zkOp.ping, new JuteWriter()));
  }

  private onData(chunk: Buffer): void {
    this.lastHeardMs = this.clock.nowMs();
    this.inbox = this.inbox.length === 0 ? chunk : Buffer.concat([this.inbox, chunk]);
    while (this.inbox.length >= 4) {
      const length = this.inbox.readInt32BE(0);
      if (length < 16 || length > packetBytesMax) {
        this.options.logger?.warn({ length }, 'ZooKeeper: malformed packet, dropping the connection');
        this.socket?.destroy();
        return;
      }
      if (this.inbox.length < 4 + length) return;
      const packet = this.inbox.subarray(4, 4 + length);
      this.inbox = this.inbox.subarray(4 + length);
      try {
        this.onPacket(packet);
      } catch (error) {
        this.options.logger?.warn({ err: String(error) }, 'ZooKeeper: unreadable packet, dropping the connection');
        this.socket?.destroy();
        return;
      }
    }
  }

  private onPacket(packet: Buffer): void {
    const r = new JuteReader(packet);
    const header = decodeReplyHeader(r);
    if (header.zxid > this.lastZxid) this.lastZxid = header.zxid;
    if (header.xid === zkXid.ping) return;
    if (header.xid === zkXid.notification) {
      const event = decodeWatchEvent(r);
      this.options.onWatch({ type: event.type, path: event.path });
      return;
    }
    const pending = this.pending.get(header.xid);
    if (pending === undefined) return;
    this.pending.delete(header.xid);
    pending.resolve(r, header.err);
  }

  private onLost(socket: net.Socket): void {
    if (socket !== this.socket) return;
    this.stopConnection();
    if (this.state !== 'connected') return;
    this.state = 'disconnected';
    this.options.logger?.warn({ session: this.sessionId.toString(16) }, 'lost the ZooKeeper server; reconnecting');
    this.options.onState('disconnected');
    void this.reconnect();
  }

  /** Tries every server in turn, forever, until one takes the session back or says it expired. */
  private async reconnect(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      for (let round = 0; this.state === 'disconnected'; round++) {
        for (let i = 0; i < this.options.servers.length && this.state === 'disconnected'; i++) {
          const outcome = await this.connectOnce(this.timeoutMs);
          if (outcome.kind !== 'failed') return;
        }
        await this.clock.sleep(Math.min(retryDelayMaxMs, retryDelayMinMs * 2 ** round));
      }
    } finally {
      this.reconnecting = false;
    }
  }

  private stopConnection(): void {
    this.pingTimer?.cancel();
    this.silenceTimer?.cancel();
    this.pingTimer = undefined;
    this.silenceTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
    this.inbox = Buffer.alloc(0);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.resolve(null, zkErr.connectionLoss);
  }

  private finish(state: 'closed' | 'expired'): void {
    if (this.state === 'closed' || this.state === 'expired') return;
    const notify = this.state !== 'connecting' || state === 'expired';
    this.state = state;
    this.stopConnection();
    if (notify) this.options.onState(state);
  }
}
