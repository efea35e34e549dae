// A simulated network of named hosts: every host gets a Transport whose connections are pairs of
// in-memory Duplex streams. The level is the byte stream, as TCP gives it: each chunk a side
// writes reaches the other side whole, in order, after a delay drawn from the seeded Random.
// Faults are what a byte stream can show:
// - delay: per chunk; chunks of different connections overtake each other (reordering between
//   connections), never within one (TCP keeps order);
// - drop/reset: a connection is reset at a chunk boundary and what was in flight is lost; a
//   reset right after a request reached the server loses the reply, so the client's retry
//   delivers the request a second time: that is how duplicates happen at this level (bytes are
//   never duplicated inside a stream);
// - partition: hosts on two sides of a cut cannot exchange bytes: chunks in flight wait until
//   the cut heals (a stalled TCP connection), a connect across the cut hangs a bounded time and
//   fails with ETIMEDOUT;
// - crash: a host's connections are reset, its listeners closed, and its Transport of that
//   incarnation fenced (a crashed process cannot keep talking).
import { Duplex } from 'node:stream';
import type { Clock } from '../io/clock.js';
import type { Random } from '../io/random.js';
import type { Listener, Transport } from '../io/transport.js';

export interface NetworkFaults {
  /** One-way delay of a chunk or a connect. */
  delayMs: { minMs: number; maxMs: number };
  /** Chance that a connection is reset right after a chunk was delivered on it. */
  resetAfterChunk: number;
  /** Chance that a connect is refused outright (a SYN lost and given up on). */
  connectFailure: number;
  /** How long a connect across a partition hangs before it fails. */
  connectHangMsMax: number;
}

export const quietNetwork: NetworkFaults = {
  delayMs: { minMs: 0.05, maxMs: 0.5 },
  resetAfterChunk: 0,
  connectFailure: 0,
  connectHangMsMax: 3000,
};

function errnoError(code: string, message: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: ${message}`) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}

type Payload = { kind: 'data'; chunk: Buffer } | { kind: 'end' };
type Item = Payload & { atMs: number };

/** One direction of a connection: chunks in flight, delivered in order at their times. */
class Pipe {
  readonly queue: Item[] = [];
  lastAtMs = 0;
  pumping = false;
  stalled = false;

  constructor(
    readonly from: string,
    readonly to: string,
  ) {}
}

class Connection {
  readonly client: SimSocket;
  readonly server: SimSocket;
  readonly toServer: Pipe;
  readonly toClient: Pipe;
  closed = false;

  constructor(
    private readonly network: SimNetwork,
    readonly id: number,
    readonly clientHost: string,
    readonly serverHost: string,
  ) {
    this.toServer = new Pipe(clientHost, serverHost);
    this.toClient = new Pipe(serverHost, clientHost);
    this.client = new SimSocket(this, this.toServer);
    this.server = new SimSocket(this, this.toClient);
    let closes = 0;
    for (const side of [this.client, this.server]) {
      side.once('close', () => {
        if (++closes === 2) this.network.forget(this);
      });
    }
  }

  send(pipe: Pipe, item: Payload): void {
    if (this.closed) return;
    this.network.enqueue(this, pipe, item);
  }

  /**
   * Both ends fail with ECONNRESET; nothing more is delivered. The end on a host that crashed
   * just closes: its process is gone and hears nothing.
   */
  reset(reason: string, crashedHost?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.network.forget(this);
    const ends: Array<[SimSocket, string]> = [
      [this.client, this.clientHost],
      [this.server, this.serverHost],
    ];
    for (const [side, host] of ends) {
      if (side.destroyed) continue;
      if (host === crashedHost) side.destroy();
      else side.destroy(errnoError('ECONNRESET', reason));
    }
  }

  /** A clean close by one side: the other sees its end of stream once the bytes before it land. */
  closedBy(side: SimSocket): void {
    const pipe = side === this.client ? this.toServer : this.toClient;
    this.send(pipe, { kind: 'end' });
  }

  peerOf(pipe: Pipe): SimSocket {
    return pipe === this.toServer ? this.server : this.client;
  }
}

/** One end of a simulated connection. */
class SimSocket extends Duplex {
  constructor(
    private readonly connection: Connection,
    private readonly outgoing: Pipe,
  ) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    // Data is pushed as it arrives; there is nothing to pull.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // Not copied (a socket would copy into the kernel): writers here never reuse a buffer they
    // handed to write(), and copying every 4 MiB table twice per hop dominated the run time.
    this.connection.send(this.outgoing, { kind: 'data', chunk });
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.connection.closedBy(this);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.connection.closed) this.connection.closedBy(this);
    callback(error);
  }

  setNoDelay(): this {
    return this;
  }
}

interface HostState {
  generation: number;
  listeners: Map<number, (stream: Duplex, remote: string) => void>;
}

export interface WireObserver {
  onChunk(connectionId: number, toServer: boolean, toHost: string, chunk: Buffer): void;
  onClose(connectionId: number): void;
}

export class SimNetwork {
  faults: NetworkFaults;
  private readonly hosts = new Map<string, HostState>();
  private readonly connections = new Set<Connection>();
  /** Pairs of hosts that cannot reach each other, as "a|b" with a < b. */
  private readonly cuts = new Set<string>();
  private nextConnectionId = 1;
  private nextPort = 40000;
  /** Counters for the report: chunks delivered, resets injected, connects refused. */
  readonly counts = { chunks: 0, resets: 0, refused: 0, timedOut: 0 };
  /** Sees every chunk as it lands (the epoch oracle). */
  observer: WireObserver | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly random: Random,
    faults: NetworkFaults = quietNetwork,
  ) {
    this.faults = faults;
  }

  /** The Transport of one incarnation of `host`: fenced when the host crashes. */
  host(name: string): Transport {
    const state = this.state(name);
    const generation = state.generation;
    const alive = (): void => {
      if (state.generation !== generation) throw errnoError('ENETDOWN', `${name} crashed`);
    };
    return {
      listen: async (bindHost, port, onConnection) => {
        alive();
        if (!this.isLocalName(name, bindHost)) throw errnoError('EADDRNOTAVAIL', `${bindHost} is not ${name}`);
        if (state.listeners.has(port)) throw errnoError('EADDRINUSE', `${name}:${port} is in use`);
        state.listeners.set(port, onConnection);
        const listener: Listener = {
          port,
          close: async () => {
            if (state.listeners.get(port) === onConnection) state.listeners.delete(port);
          },
        };
        return listener;
      },
      connect: async (targetHost, port) => {
        alive();
        const target = this.isLocalName(name, targetHost) ? name : targetHost;
        return this.connect(name, target, port, () => state.generation === generation);
      },
    };
  }

  // ---- faults ----

  /** No host of `side` can reach a host of `other` (and the reverse) until healed. */
  cut(side: readonly string[], other: readonly string[]): void {
    for (const a of side) for (const b of other) if (a !== b) this.cuts.add(pairKey(a, b));
  }

  /** `host` can reach nobody. */
  isolate(host: string): void {
    this.cut([host], [...this.hosts.keys()]);
  }

  heal(): void {
    this.cuts.clear();
    for (const connection of this.connections) {
      for (const pipe of [connection.toServer, connection.toClient]) {
        if (pipe.stalled) {
          pipe.stalled = false;
          this.pump(connection, pipe);
        }
      }
    }
  }

  canReach(a: string, b: string): boolean {
    return a === b || !this.cuts.has(pairKey(a, b));
  }

  get partitioned(): boolean {
    return this.cuts.size > 0;
  }

  /** A power loss of `host`: connections reset, listeners gone, its transport fenced. */
  crashHost(host: string): void {
    const state = this.state(host);
    state.generation += 1;
    state.listeners.clear();
    for (const connection of [...this.connections]) {
      if (connection.clientHost === host || connection.serverHost === host) connection.reset(`${host} crashed`, host);
    }
  }

  /** Resets every connection between the two hosts (either direction). */
  resetBetween(a: string, b: string): void {
    for (const connection of [...this.connections]) {
      const ends = [connection.clientHost, connection.serverHost];
      if (ends.includes(a) && ends.includes(b)) connection.reset(`reset between ${a} and ${b}`);
    }
  }

  get openConnections(): number {
    return this.connections.size;
  }

  // ---- for Connection ----

  enqueue(connection: Connection, pipe: Pipe, item: Payload): void {
    const atMs = Math.max(pipe.lastAtMs, this.clock.nowMs() + this.delayMs());
    pipe.lastAtMs = atMs;
    pipe.queue.push({ ...item, atMs });
    this.pump(connection, pipe);
  }

  forget(connection: Connection): void {
    if (this.connections.delete(connection)) this.observer?.onClose(connection.id);
  }

  // ---- internals ----

  private state(name: string): HostState {
    let state = this.hosts.get(name);
    if (!state) {
      state = { generation: 0, listeners: new Map() };
      this.hosts.set(name, state);
    }
    return state;
  }

  private isLocalName(self: string, host: string): boolean {
    return host === self || host === '0.0.0.0' || host === '::' || host === '127.0.0.1' || host === 'localhost';
  }

  private delayMs(): number {
    const { minMs, maxMs } = this.faults.delayMs;
    return minMs + this.random.float() * (maxMs - minMs);
  }

  private async connect(from: string, to: string, port: number, stillAlive: () => boolean): Promise<Duplex> {
    await this.clock.sleep(this.delayMs());
    if (!this.canReach(from, to)) {
      await this.clock.sleep(this.random.float() * this.faults.connectHangMsMax);
      this.counts.timedOut += 1;
      throw errnoError('ETIMEDOUT', `connect ${from} → ${to}:${port}: no route (partition)`);
    }
    if (this.random.float() < this.faults.connectFailure) {
      this.counts.refused += 1;
      throw errnoError('ECONNREFUSED', `connect ${from} → ${to}:${port}: refused (injected)`);
    }
    const onConnection = this.hosts.get(to)?.listeners.get(port);
    if (onConnection === undefined || !stillAlive()) {
      this.counts.refused += 1;
      throw errnoError('ECONNREFUSED', `connect ${from} → ${to}:${port}: nobody listens`);
    }
    const connection = new Connection(this, this.nextConnectionId++, from, to);
    this.connections.add(connection);
    // Until the caller has the stream, a reset is reported by the rejection below, not as an
    // 'error' event nobody listens to yet.
    const untilHandedOver = (): void => undefined;
    connection.client.on('error', untilHandedOver);
    onConnection(connection.server, `${from}:${this.nextPort++}`);
    // The accept travels back to the client.
    await this.clock.sleep(this.delayMs());
    connection.client.off('error', untilHandedOver);
    if (connection.closed) throw errnoError('ECONNRESET', `connect ${from} → ${to}:${port}: reset`);
    return connection.client;
  }

  /** Delivers the head of `pipe` at its time; one scheduled delivery per pipe at a time. */
  private pump(connection: Connection, pipe: Pipe): void {
    if (pipe.pumping || pipe.stalled || connection.closed) return;
    const head = pipe.queue[0];
    if (head === undefined) return;
    pipe.pumping = true;
    this.clock.after(Math.max(0, head.atMs - this.clock.nowMs()), () => {
      pipe.pumping = false;
      if (connection.closed) return;
      if (!this.canReach(pipe.from, pipe.to)) {
        pipe.stalled = true; // released by heal(), in order
        return;
      }
      const item = pipe.queue.shift()!;
      this.deliver(connection, pipe, item);
      this.pump(connection, pipe);
    });
  }

  private deliver(connection: Connection, pipe: Pipe, item: Item): void {
    const target = connection.peerOf(pipe);
    if (item.kind === 'end') {
      if (!target.destroyed) target.push(null);
      return;
    }
    this.counts.chunks += 1;
    if (!target.destroyed) {
      this.observer?.onChunk(connection.id, pipe === connection.toServer, pipe.to, item.chunk);
      target.push(item.chunk);
    }
    if (this.faults.resetAfterChunk > 0 && this.random.float() < this.faults.resetAfterChunk) {
      this.counts.resets += 1;
      connection.reset('connection reset (injected)');
    }
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
