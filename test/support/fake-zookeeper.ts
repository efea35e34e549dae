// An in-memory ZooKeeper behind the driver's seam (ZkSession), for what a real server cannot be
// made to do on cue: lose the reply of a create it applied, drop a connection and give it back,
// expire a session. Sequential numbering, ephemeral nodes and one-shot watches as the real one.
import type { ZkCreateMode, ZkSession, ZkSessionOptions, ZkState } from '../../src/io/zk-client.js';
import { ZkError } from '../../src/io/zk-client.js';
import { zkWatchType } from '../../src/io/zk-jute.js';

interface Znode {
  data: Buffer;
  owner: FakeSession | undefined;
  /** The next sequence number for a sequential child. */
  cversion: number;
}

export class FakeZookeeper {
  readonly nodes = new Map<string, Znode>([['/', { data: Buffer.alloc(0), owner: undefined, cversion: 0 }]]);
  readonly sessions: FakeSession[] = [];

  connect = async (options: ZkSessionOptions): Promise<ZkSession> => {
    const session = new FakeSession(this, options);
    this.sessions.push(session);
    return session;
  };

  children(path: string): string[] {
    const prefix = path === '/' ? '/' : `${path}/`;
    return [...this.nodes.keys()].filter((p) => p.startsWith(prefix) && p !== path && !p.slice(prefix.length).includes('/')).map((p) => p.slice(prefix.length));
  }

  /** Fires (and clears) the watches of `path` on every connected session. */
  fire(path: string, type: number): void {
    for (const session of this.sessions) session.fire(path, type);
  }

  remove(path: string): void {
    if (!this.nodes.delete(path)) return;
    this.fire(path, zkWatchType.deleted);
    this.fire(parentOf(path), zkWatchType.childrenChanged);
  }
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export class FakeSession implements ZkSession {
  readonly timeoutMs: number;
  state: ZkState = 'connected';
  /** The next create is applied, but its reply is lost with the connection. */
  loseNextCreateReply = false;
  private readonly existsWatches = new Set<string>();
  private readonly childWatches = new Set<string>();

  constructor(
    private readonly zk: FakeZookeeper,
    private readonly options: ZkSessionOptions,
  ) {
    this.timeoutMs = options.sessionTimeoutMs;
  }

  private check(): void {
    if (this.state !== 'connected') throw new ZkError(-4, 'lost the connection to ZooKeeper');
  }

  async create(path: string, data: Buffer, mode: ZkCreateMode): Promise<string> {
    this.check();
    const parent = this.zk.nodes.get(parentOf(path));
    if (parent === undefined) throw new ZkError(-101, `ZooKeeper NONODE on ${path}`);
    const name = mode === 'persistent_sequential' ? `${path}${String(parent.cversion).padStart(10, '0')}` : path;
    if (this.zk.nodes.has(name)) throw new ZkError(-110, `ZooKeeper NODEEXISTS on ${path}`);
    parent.cversion += 1;
    this.zk.nodes.set(name, { data: Buffer.from(data), owner: mode === 'ephemeral' ? this : undefined, cversion: 0 });
    this.zk.fire(name, zkWatchType.created);
    this.zk.fire(parentOf(name), zkWatchType.childrenChanged);
    if (this.loseNextCreateReply) {
      this.loseNextCreateReply = false;
      this.disconnect();
      throw new ZkError(-4, 'lost the connection to ZooKeeper');
    }
    return name;
  }

  async remove(path: string): Promise<boolean> {
    this.check();
    const had = this.zk.nodes.has(path);
    this.zk.remove(path);
    return had;
  }

  async exists(path: string, watch: boolean): Promise<boolean> {
    this.check();
    if (watch) this.existsWatches.add(path);
    return this.zk.nodes.has(path);
  }

  async getData(path: string, watch: boolean): Promise<Buffer | null> {
    this.check();
    if (watch) this.existsWatches.add(path);
    return this.zk.nodes.get(path)?.data ?? null;
  }

  async getChildren(path: string, watch: boolean): Promise<string[] | null> {
    this.check();
    if (!this.zk.nodes.has(path)) return null;
    if (watch) this.childWatches.add(path);
    return this.zk.children(path);
  }

  async sync(): Promise<void> {
    this.check();
  }

  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'expired') return;
    this.end('closed');
  }

  fire(path: string, type: number): void {
    if (this.state !== 'connected') return;
    const watches = type === zkWatchType.childrenChanged ? this.childWatches : this.existsWatches;
    if (!watches.delete(path)) return;
    queueMicrotask(() => this.options.onWatch({ type, path }));
  }

  /** The connection drops (watches go with it); the session lives on. */
  disconnect(): void {
    this.state = 'disconnected';
    this.existsWatches.clear();
    this.childWatches.clear();
    this.options.onState('disconnected');
  }

  reconnect(): void {
    this.state = 'connected';
    this.options.onState('connected');
  }

  /** The ensemble expires the session: its ephemeral nodes go, it hears so when it reconnects. */
  expire(): void {
    this.end('expired');
  }

  private end(state: 'closed' | 'expired'): void {
    this.state = state;
    for (const [path, node] of [...this.zk.nodes]) if (node.owner === this) this.zk.remove(path);
    this.options.onState(state);
  }
}
