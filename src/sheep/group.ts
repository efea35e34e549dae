// The group state machine: turns the driver's ordered events into cluster state (format, epochs,
// membership, the VDI registry, the cluster key). Every handler is synchronous and deterministic, so
// every sheep that sees the same events reaches the same state. Durable copies are written behind,
// in order. The key travels only in the driver's messages (format, join), the path that is already
// the cluster's own (docs/security.md).
import type { ClusterHandlers, JoinVerdict, Json, NodeInfo } from '../cluster/driver.js';
import { parseKey } from '../engine/cluster-key.js';
import { SdError } from '../engine/errors.js';
import { Ring } from '../engine/ring.js';
import { nowSec, type Clock, type Timer } from '../io/clock.js';
import { CoordinatorFence } from './coordinator-fence.js';
import { VdiRegistry, type VdiEntry } from '../engine/vdi.js';
import type { AttrChange } from '../engine/vdi-attrs.js';
import type { VdiLock } from '../engine/vdi-locks.js';
import { keyIdOf } from '../rpc/auth.js';
import type { ClusterStatus, RegistryDurabilityData } from '../rpc/protocol.js';
import type { ClusterConfig, EpochRecord, MetaStore } from '../store/meta.js';

export type { ClusterStatus };

/** What a joiner brings and what the master hands back: the state of one store. */
export interface StoreState {
  config: ClusterConfig | null;
  epochs: EpochRecord[];
  registry: Json;
  status: ClusterStatus;
  recoveryEnabled: boolean;
  throttle?: { maxObjects: number; intervalMs: number };
  /** The cluster key (base64), or null before there is one. */
  key?: string | null;
  /** Its key id instead, where the driver must not carry the key itself (zookeeper). */
  keyId?: string | null;
  /** Writers' locks (memory only: no writer outlives a restart of the whole cluster). */
  locks?: VdiLock[];
}

export type GroupMessage =
  | { type: 'format'; config: ClusterConfig; timeSec: number; key?: string }
  /** `freed`: VIDs used again from now on (`cluster format -R`, vdi-recycle.ts). */
  | { type: 'vdi'; entries: VdiEntry[]; freed?: number[] }
  | { type: 'attr'; change: AttrChange }
  /** `dog node vnodes set`: a node's vnodes from now on, with a new epoch. */
  | { type: 'vnodes'; node: string; vnodes: number; timeSec: number }
  /** `dog cluster reweight`: vnodes by store capacity (reweight-service.ts), with a new epoch. */
  | { type: 'reweight'; vnodes: Record<string, number>; timeSec: number }
  /** `dog cluster format` of a formatted cluster: every store was emptied before (format-service.ts). */
  | { type: 'reformat'; config: ClusterConfig; timeSec: number }
  | { type: 'lock'; lock: VdiLock }
  /** Frees the lock of `holder`, or with `name` every lock of that VDI (`dog vdi lock unlock`). */
  | { type: 'unlock'; holder?: string; name?: string }
  /** alter-copy: new copies for these VDIs (and the cluster default), then a new epoch recovers. */
  | { type: 'copies'; entries: VdiEntry[]; clusterCopies?: number; timeSec: number }
  | { type: 'noop' }
  | { type: 'shutdown' }
  | { type: 'epoch_time'; epoch: number; timeSec: number }
  | { type: 'recover'; action: 'force' | 'enable' | 'disable'; timeSec: number }
  | { type: 'recovered'; node: string; epoch: number }
  | { type: 'throttle'; maxObjects: number; intervalMs: number };

export interface GroupEvents {
  /** Called after the epoch changed (join, leave, format, forced recovery). */
  epochChanged(epoch: number): void;
  /** Every member of the epoch has finished recovering it. */
  allRecovered(epoch: number): void;
  shutdown(): void;
  /** This node was reported left while alive (it stopped answering for too long). */
  expelled(): void;
}

/** How often a node retries writing a registry it failed to store (a full or read-only store). */
export const registryRetryMs = 1000;

/** Whether this node has stored a registry version: the answer to `peer.registry-durable`. */
export type RegistryDurability = RegistryDurabilityData;

export class Group implements ClusterHandlers {
  members: NodeInfo[] = [];
  config: ClusterConfig | null = null;
  epochs: EpochRecord[] = [];
  registry = new VdiRegistry();
  status: ClusterStatus = 'unformatted';
  /** Reported left while alive: out of the cluster until it has rejoined. */
  out = false;
  /** Raised while the driver cannot reach its coordinator: client I/O waits (coordinator-fence.ts). */
  readonly coordinator: CoordinatorFence;
  recoveryEnabled = true;
  /** Recovery pace, cluster-wide (`dog node recovery set-throttle`); 0 objects: unthrottled. */
  throttle = { maxObjects: 0, intervalMs: 0 };
  /** The members as the driver reported them, before `withVnodes`. */
  private driverMembers: NodeInfo[] = [];
  /** Who holds which VDI open for writing (vdi-locks.ts), in the order taken. */
  locks: VdiLock[] = [];
  /** Called after every change of `locks` (a writer waiting for a release). */
  onLocksChanged: () => void = () => undefined;
  /** Members that finished recovering the current epoch. */
  recoveredBy = new Set<string>();
  private rings = new Map<number, Ring<NodeInfo>>();
  private persisting: Promise<void> = Promise.resolve();
  /** The registry version known to be on this node's disk, and the current write attempt. */
  private registryDurableVersion = 0;
  /** In-memory registry changes so far, and how many of them the last stored write included. */
  private registryChanges = 0;
  private registryStoredChanges = 0;
  private registryFault: string | undefined;
  private registryWriting: Promise<void> | undefined;
  private registryAttempt: Promise<void> = Promise.resolve();
  private registryWaiters = new Set<() => void>();
  /** Callers waiting for this node to reach an epoch (epoch fencing), resolved on epoch change. */
  private readonly epochWaiters = new Set<{ epoch: number; settle(reached: boolean): void }>();
  /** Set by the owner once wired; events before that are impossible (join comes after). */
  events: GroupEvents | undefined;
  /** The cluster key: every connection to this node proves it (rpc/auth.ts). None before format. */
  key: Buffer | undefined;
  private keyStored = false;

  /** `newKey` makes a key for a formatted cluster that has none (stores of an older version). */
  constructor(
    readonly self: NodeInfo,
    private readonly meta: MetaStore,
    private readonly clock: Clock,
    private readonly log: { warn(o: object, m?: string): void; info(o: object, m?: string): void; error(o: object, m?: string): void },
    private readonly newKey?: () => Buffer,
    /**
     * false: the driver's messages leave this host and are stored where others may read them
     * (ZooKeeper), so they name the key by its id only, and every sheep brings its own (-k).
     */
    readonly keyTravels = true,
  ) {
    this.coordinator = new CoordinatorFence(clock);
  }

  async load(): Promise<void> {
    this.config = (await this.meta.readConfig()) ?? null;
    this.epochs = await this.meta.readEpochs();
    this.registry = VdiRegistry.fromJson((await this.meta.readRegistry()) ?? null);
    this.registryDurableVersion = this.registry.version;
    this.status = this.config ? 'waiting' : 'unformatted';
    this.key = await this.meta.readKey();
    this.keyStored = this.key !== undefined;
  }

  /**
   * A key the admin gave this node (-k): it joins with it, and stores it once the cluster took it.
   * Refused when the store already holds another.
   */
  offerKey(key: Buffer, source: string): void {
    if (this.key && !this.key.equals(key)) {
      throw new SdError('AUTH', `the key in ${source} (key id ${keyIdOf(key)}) is not the one of this store (${keyIdOf(this.key)})`);
    }
    this.key = key;
  }

  /** Where this node's copy of the key is, for clients on this host. */
  get keyFile(): string {
    return this.meta.keyFile;
  }

  storeState(): StoreState {
    return {
      config: this.config,
      epochs: this.epochs,
      registry: this.registry.toJson(),
      status: this.status,
      recoveryEnabled: this.recoveryEnabled,
      throttle: this.throttle,
      ...this.keyFields(this.key),
      locks: this.locks,
    };
  }

  /** How a store state names the key: itself, or (keyTravels false) its id. */
  private keyFields(key: Buffer | undefined): Pick<StoreState, 'key' | 'keyId'> {
    if (!this.keyTravels) return { key: null, keyId: key ? keyIdOf(key) : null };
    return { key: key ? key.toString('base64') : null };
  }

  /** The one answer to "may a client request run now?": throws the status's error otherwise. */
  requireRunning(): void {
    if (this.out) throw new SdError('WAIT_FOR_JOIN', 'This node was reported left and waits to rejoin the cluster');
    if (this.status === 'unformatted') throw new SdError('NOT_FORMATTED', 'Waiting for cluster to be formatted');
    if (this.status === 'waiting') throw new SdError('WAIT_FOR_JOIN', 'Waiting for other nodes to join cluster');
    if (this.status === 'shutdown') throw new SdError('SHUTDOWN', 'Cluster is shutting down');
  }

  get epoch(): number {
    return this.epochs.at(-1)?.epoch ?? 0;
  }

  /** The ring of an epoch (default: the current one); gateway nodes have 0 vnodes. */
  ring(epoch = this.epoch): Ring<NodeInfo> {
    let ring = this.rings.get(epoch);
    if (!ring) {
      const record = this.epochs.find((e) => e.epoch === epoch);
      ring = new Ring(record?.nodes ?? []);
      this.rings.set(epoch, ring);
    }
    return ring;
  }

  /**
   * Resolves true as soon as this node's epoch is `epoch` or later, false after `timeoutMs`.
   * Settled by the epoch change itself, never by polling.
   */
  waitForEpoch(epoch: number, timeoutMs: number): Promise<boolean> {
    if (this.epoch >= epoch) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let timer: Timer | undefined;
      const waiter = {
        epoch,
        settle: (reached: boolean) => {
          timer?.cancel();
          this.epochWaiters.delete(waiter);
          resolve(reached);
        },
      };
      this.epochWaiters.add(waiter);
      timer = this.clock.after(timeoutMs, () => waiter.settle(false));
    });
  }

  private epochMoved(): void {
    for (const waiter of [...this.epochWaiters]) if (this.epoch >= waiter.epoch) waiter.settle(true);
  }

  /** Resolves with the epoch once it is past `epoch`, or with `epoch` after `timeoutMs`. */
  async epochAfter(epoch: number, timeoutMs: number): Promise<number> {
    await this.waitForEpoch(epoch + 1, timeoutMs);
    return this.epoch;
  }

  /**
   * Resolves once every state change so far has been written, or its write has failed (a failed
   * registry write is retried in the background; `registryDurable` tells whether it landed).
   */
  async flushed(): Promise<void> {
    await this.persisting;
    await this.registryAttempt;
  }

  /**
   * Waits (at most `timeoutMs`) until this node's disk holds registry `version` or newer. A VDI
   * change is acknowledged only once every member answers yes: a node whose copy stayed stale
   * would otherwise bring the old registry back at the next restart.
   */
  async registryDurable(version: number, timeoutMs: number): Promise<RegistryDurability> {
    const answer = (): RegistryDurability => ({
      durable: this.registryDurableVersion >= version,
      durableVersion: this.registryDurableVersion,
      ...(this.registryFault !== undefined ? { fault: this.registryFault } : {}),
    });
    let timedOut = false;
    const deadline = this.clock.sleep(timeoutMs).then(() => void (timedOut = true));
    // A fault is the answer at once: the caller reports it rather than waiting out the retries.
    while (this.registryDurableVersion < version && this.registryFault === undefined && !timedOut) {
      await Promise.race([new Promise<void>((resolve) => this.registryWaiters.add(resolve)), deadline]);
    }
    return answer();
  }

  // ---- driver handlers ------------------------------------------------------------------

  checkJoin(joiner: NodeInfo, request: Json): JoinVerdict {
    const theirs = request as unknown as StoreState;
    if (joiner.id === this.self.id && this.members.length === 0) {
      return { accept: true, payload: { state: this.keyed(this.storeState(), null), timeSec: nowSec(this.clock) } as unknown as Json };
    }
    const mine = this.storeState();
    const keyMismatch = keyRefusal(mine, theirs, this.keyTravels);
    if (keyMismatch) return { accept: false, reason: keyMismatch };
    // While waiting after a restart, a joiner that saw more epochs than we did brings the history
    // the cluster must resume from; once running, a newer joiner has diverged and is refused.
    const refusal = joinRefusal(mine, theirs, this.status !== 'running');
    if (refusal) return { accept: false, reason: refusal };
    const theirsNewer = (theirs.epochs.at(-1)?.epoch ?? 0) > this.epoch;
    const base =
      (this.status === 'unformatted' && theirs.config !== null) || (this.status === 'waiting' && theirsNewer)
        ? { ...theirs, status: 'waiting' as const }
        : mine;
    // Until the cluster runs again, every store that comes back is asked for its registry and the
    // newest wins, whichever node started first: one node that failed to store a change must not
    // bring an older registry back (a running cluster's registry is current by construction).
    const adopt = this.status === 'running' ? base : { ...base, registry: newerRegistry(mine.registry, theirs.registry) };
    // A joiner without a key is handed the cluster's: it proved itself by joining through the
    // driver, which only the cluster's own user can (docs/security.md).
    return { accept: true, payload: { state: this.keyed(adopt, theirs.key ?? null), timeSec: nowSec(this.clock) } as unknown as Json };
  }

  /** `state` with the cluster's key: ours, else the joiner's, else (formatted) a new one. */
  private keyed(state: StoreState, theirs: string | null): StoreState {
    if (!this.keyTravels) return { ...state, ...this.keyFields(this.key) };
    const mine = this.key ? this.key.toString('base64') : null;
    const key = mine ?? theirs ?? (state.config && this.newKey ? this.newKey().toString('base64') : null);
    return { ...state, key };
  }

  onJoin(joiner: NodeInfo, members: readonly NodeInfo[], payload: Json): void {
    const { state, timeSec } = payload as unknown as { state: StoreState; timeSec: number };
    if (joiner.id === this.self.id) {
      this.out = false;
      // A join went through the coordinator: a fence left by an earlier incarnation is lifted.
      this.coordinator.set(true);
    }
    this.adopt(state);
    this.driverMembers = [...members];
    this.members = this.withVnodes(members);
    if (this.status === 'waiting') this.maybeStopWaiting(timeSec);
    else if (this.status === 'running') this.newEpoch(timeSec);
    this.log.info({ node: joiner.id, epoch: this.epoch, status: this.status }, 'node joined');
  }

  onLeave(node: NodeInfo, members: readonly NodeInfo[]): void {
    this.driverMembers = [...members];
    this.members = this.withVnodes(members);
    if (node.id === this.self.id) {
      // Out of the cluster: the epochs the others now make are theirs, learnt back at the rejoin.
      this.log.warn({ node: node.id, epoch: this.epoch }, 'this node was reported left');
      // Its view (registry, owner tables) may fall behind from now on: no client I/O here.
      this.out = true;
      this.events?.expelled();
      return;
    }
    if (this.status === 'running') {
      this.newEpoch(nowSec(this.clock));
      // Epoch times must be identical everywhere: the oldest member announces its clock.
      if (this.members[0]?.id === this.self.id) {
        this.announce({ type: 'epoch_time', epoch: this.epoch, timeSec: this.epochs.at(-1)!.timeSec });
      }
    }
    this.log.info({ node: node.id, epoch: this.epoch }, 'node left');
  }

  onCoordinator(reachable: boolean): void {
    this.coordinator.set(reachable);
    if (reachable) this.log.info({ epoch: this.epoch }, 'the cluster coordinator is reachable again; serving');
    else this.log.warn({ epoch: this.epoch }, 'cut off from the cluster coordinator; client I/O waits');
  }

  onNotify(_from: NodeInfo, message: Json): void {
    const m = message as unknown as GroupMessage;
    switch (m.type) {
      case 'format':
        if (!this.config) this.takeKey(m.key);
        this.applyFormat(m.config, m.timeSec);
        break;
      case 'vdi':
        this.registry.apply(m.entries);
        if (m.freed) this.registry.free(m.freed);
        this.storeRegistry();
        break;
      case 'attr':
        this.registry.applyAttr(m.change);
        this.storeRegistry();
        break;
      case 'vnodes':
        this.applyVnodes({ [m.node]: m.vnodes }, m.timeSec);
        break;
      case 'reweight':
        this.applyVnodes(m.vnodes, m.timeSec);
        break;
      case 'reformat':
        this.applyReformat(m.config, m.timeSec);
        break;
      case 'copies':
        this.applyCopies(m.entries, m.clusterCopies, m.timeSec);
        break;
      case 'lock':
        this.locks = [...this.locks, m.lock];
        this.onLocksChanged();
        break;
      case 'unlock':
        this.locks = this.locks.filter((l) => l.holder !== m.holder && l.name !== m.name);
        this.onLocksChanged();
        break;
      case 'epoch_time': {
        const record = this.epochs.find((e) => e.epoch === m.epoch);
        if (record && record.timeSec !== m.timeSec) {
          record.timeSec = m.timeSec;
          const copy = { ...record };
          this.persist(() => this.meta.writeEpoch(copy));
        }
        break;
      }
      case 'recover':
        this.applyRecover(m.action, m.timeSec);
        break;
      case 'recovered':
        if (m.epoch !== this.epoch) break;
        this.recoveredBy.add(m.node);
        if (this.members.every((n) => this.recoveredBy.has(n.id))) this.events?.allRecovered(m.epoch);
        break;
      case 'throttle':
        this.throttle = { maxObjects: m.maxObjects, intervalMs: m.intervalMs };
        break;
      case 'shutdown':
        this.status = 'shutdown';
        this.events?.shutdown();
        break;
      case 'noop':
        break;
    }
  }

  /** Set by the owner: how this node sends a notify (the driver's). */
  announce: (message: GroupMessage) => void = () => undefined;

  // ---- state changes --------------------------------------------------------------------

  /** Takes the cluster's key (and stores it) unless this node holds one; a different one is a bug. */
  private takeKey(text: string | null | undefined): void {
    // Where the key does not travel, the cluster took ours (by its id): keep it, stored.
    const key = text ? parseKey(text) : this.keyTravels ? undefined : this.key;
    if (!key) return;
    if (this.key && !this.key.equals(key)) {
      this.log.error({ ours: keyIdOf(this.key), theirs: keyIdOf(key) }, 'the cluster sent another key than this node holds: keeping ours');
      return;
    }
    this.key = key;
    if (this.keyStored) return;
    this.keyStored = true;
    this.persist(() => this.meta.writeKey(key));
  }

  private adopt(state: StoreState): void {
    this.takeKey(state.key);
    if (state.config && JSON.stringify(this.config) !== JSON.stringify(state.config)) {
      this.config = state.config;
      const config = state.config;
      this.persist(() => this.meta.writeConfig(config));
    }
    const last = state.epochs.at(-1)?.epoch ?? 0;
    if (last > this.epoch || (last === this.epoch && JSON.stringify(state.epochs) !== JSON.stringify(this.epochs))) {
      this.epochs = state.epochs.map((e) => ({ ...e, nodes: [...e.nodes] }));
      this.rings.clear();
      const epochs = this.epochs.map((e) => ({ ...e }));
      this.persist(async () => {
        for (const record of epochs) await this.meta.writeEpoch(record);
      });
      this.epochMoved();
    }
    const registry = VdiRegistry.fromJson(state.registry);
    if (registry.version !== this.registry.version || JSON.stringify(registry.toJson()) !== JSON.stringify(this.registry.toJson())) {
      this.registry = registry;
      this.storeRegistry();
    }
    this.status = state.config ? (state.status === 'running' ? 'running' : 'waiting') : 'unformatted';
    this.recoveryEnabled = state.recoveryEnabled;
    if (state.throttle) this.throttle = { ...state.throttle };
    if (state.locks) {
      this.locks = state.locks.map((l) => ({ ...l }));
      this.onLocksChanged();
    }
  }

  private applyFormat(config: ClusterConfig, timeSec: number): void {
    if (this.config) return; // a second format racing the first: the first won everywhere
    this.config = config;
    this.epochs = [];
    this.rings.clear();
    this.status = 'running';
    this.persist(() => this.meta.writeConfig(config));
    this.newEpoch(timeSec);
  }

  /** Members with the vnodes an admin set (a gateway stays one: it has no store). */
  private withVnodes(members: readonly NodeInfo[]): NodeInfo[] {
    const set = this.config?.vnodes ?? {};
    return members.map((m) => (set[m.id] !== undefined && m.vnodes > 0 ? { ...m, vnodes: set[m.id]! } : { ...m }));
  }

  /** The ring changes with nodes' vnodes: a new epoch recovers what moves. */
  private applyVnodes(vnodes: Record<string, number>, timeSec: number): void {
    if (!this.config) return;
    const config = { ...this.config, vnodes: { ...this.config.vnodes, ...vnodes } };
    this.config = config;
    this.persist(() => this.meta.writeConfig(config));
    this.members = this.withVnodes(this.driverMembers);
    if (this.status === 'running') this.newEpoch(timeSec);
  }

  /**
   * A new cluster over the old members: a new identity (format time) and an empty registry, whose
   * version still grows, so no store that missed this can bring the old one back. Epochs go on
   * (unlike the original, which started again at 1): recovery and fencing rely on them growing.
   */
  private applyReformat(config: ClusterConfig, timeSec: number): void {
    if (!this.config) return;
    this.config = config;
    this.persist(() => this.meta.writeConfig(config));
    this.registry = VdiRegistry.fromJson({ version: this.registry.version + 1, entries: [] });
    this.storeRegistry();
    this.locks = [];
    this.onLocksChanged();
    this.members = this.withVnodes(this.driverMembers);
    if (this.status === 'running') this.newEpoch(timeSec);
  }

  /**
   * A change of redundancy: the placement of every object of these VDIs changes with it, so a
   * new epoch (same members) starts the ordinary recovery, which copies what new replicas lack
   * and, once every member is done, drops the copies no longer owned.
   */
  private applyCopies(entries: VdiEntry[], clusterCopies: number | undefined, timeSec: number): void {
    if (!this.config) return;
    if (entries.length > 0) {
      this.registry.apply(entries);
      this.storeRegistry();
    }
    if (clusterCopies !== undefined && clusterCopies !== this.config.copies) {
      const config = { ...this.config, copies: clusterCopies };
      this.config = config;
      this.persist(() => this.meta.writeConfig(config));
    }
    if (this.status === 'running' && entries.length > 0) this.newEpoch(timeSec);
  }

  private applyRecover(action: 'force' | 'enable' | 'disable', timeSec: number): void {
    if (action === 'enable') this.recoveryEnabled = true;
    else if (action === 'disable') this.recoveryEnabled = false;
    else if (this.status === 'waiting') {
      this.status = 'running';
      this.newEpoch(timeSec);
    }
  }

  /** After a restart, run again once every member of the last epoch is back. */
  private maybeStopWaiting(timeSec: number): void {
    const last = this.epochs.at(-1);
    if (!last) return;
    const present = new Set(this.members.map((m) => m.id));
    if (!last.nodes.every((n) => present.has(n.id))) return;
    this.status = 'running';
    const same = last.nodes.length === this.members.length;
    if (!same) this.newEpoch(timeSec);
    else this.events?.epochChanged(this.epoch);
  }

  private newEpoch(timeSec: number): void {
    const record: EpochRecord = {
      epoch: this.epoch + 1,
      timeSec,
      nodes: [...this.members].sort(compareNodes),
    };
    this.epochs.push(record);
    this.recoveredBy = new Set();
    this.persist(() => this.meta.writeEpoch(record));
    this.events?.epochChanged(record.epoch);
    // After the owner reacted (recovery reset), so a request held for this epoch sees it whole.
    this.epochMoved();
  }

  /**
   * Writes the current registry; while writing fails (a full disk, a read-only file) it is
   * retried every `registryRetryMs` with whatever is current then, until a write lands.
   */
  private storeRegistry(): void {
    this.registryChanges += 1;
    this.writeRegistryLoop();
  }

  private writeRegistryLoop(): void {
    if (this.registryWriting) return; // the running loop writes the newest registry next
    this.registryWriting = (async () => {
      while (this.registryStoredChanges < this.registryChanges) {
        const json = this.registry.toJson();
        const version = this.registry.version;
        const changes = this.registryChanges;
        const attempt = this.meta.writeRegistry(json);
        this.registryAttempt = attempt.catch(() => undefined);
        try {
          await attempt;
          if (this.registryFault !== undefined) this.log.info({ version }, 'VDI registry stored again');
          this.registryFault = undefined;
          this.registryStoredChanges = changes;
          this.registryDurableVersion = version;
        } catch (error) {
          const fault = error instanceof Error ? error.message : String(error);
          if (this.registryFault === undefined) this.log.error({ err: fault, version }, 'failed to store the VDI registry; retrying');
          this.registryFault = fault;
        }
        const waiters = [...this.registryWaiters];
        this.registryWaiters.clear();
        for (const wake of waiters) wake();
        if (this.registryFault !== undefined) await this.clock.sleep(registryRetryMs);
      }
    })().finally(() => {
      this.registryWriting = undefined;
      // A change that arrived during the last write, after the loop's check.
      if (this.registryStoredChanges < this.registryChanges) this.writeRegistryLoop();
    });
  }

  private persist(work: () => Promise<void>): void {
    this.persisting = this.persisting.then(work).catch((error: unknown) => {
      this.log.warn({ err: String(error) }, 'failed to persist cluster state');
    });
  }
}

export function compareNodes(a: NodeInfo, b: NodeInfo): number {
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return a.port - b.port;
}

/**
 * Why a joiner cannot join for its key: it holds another one than the cluster, or (the key does
 * not travel) none, which the cluster could not hand it.
 */
function keyRefusal(mine: StoreState, theirs: StoreState, keyTravels: boolean): string | undefined {
  const idOf = (state: StoreState): string | undefined => {
    const key = state.key ? parseKey(state.key) : undefined;
    return key ? keyIdOf(key) : (state.keyId ?? undefined);
  };
  const ours = idOf(mine);
  const their = idOf(theirs);
  if (!keyTravels && !their) return 'the node holds no cluster key, and this driver does not hand it out: start it with -k FILE';
  if (!ours || !their || ours === their) return undefined;
  return `the node holds another cluster key (key id ${their}; the cluster's is ${ours})`;
}

/** Why a joiner with store state `theirs` cannot join a cluster whose state is `mine`. */
export function joinRefusal(mine: StoreState, theirs: StoreState, acceptNewer = false): string | undefined {
  if (!mine.config || !theirs.config) return undefined;
  if (mine.config.createdMs !== theirs.config.createdMs) {
    return 'the node belongs to another cluster (different format time)';
  }
  for (const record of theirs.epochs) {
    const ours = mine.epochs.find((e) => e.epoch === record.epoch);
    if (!ours) {
      if (acceptNewer) continue;
      return `the node has epoch ${record.epoch}, newer than the cluster's ${mine.epochs.at(-1)?.epoch ?? 0}`;
    }
    const ourIds = ours.nodes.map((n) => n.id).join(',');
    const theirIds = record.nodes.map((n) => n.id).join(',');
    if (ourIds !== theirIds) return `the node's epoch ${record.epoch} history conflicts with the cluster's`;
  }
  return undefined;
}

/** The registry that has seen more changes: the one a restarted cluster must keep. */
function newerRegistry(mine: Json, theirs: Json): Json {
  const version = (json: Json) => ((json as { version?: number } | null)?.version ?? 0);
  return version(theirs) > version(mine) ? theirs : mine;
}
