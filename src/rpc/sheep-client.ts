// dog's, sheepfs's and the tests' view of a sheep: one method per client op over the one rpc
// client, plus direct object I/O to each object's primary node. Every connection proves the
// cluster key, found as key-auth.ts says unless the world names another way.
import type { NodeInfo } from '../cluster/driver.js';
import { SdError } from '../engine/errors.js';
import { directStallCheckMs } from '../engine/limits.js';
import type { ObjectIo, WriteOptions } from '../engine/object-io.js';
import type { Oid } from '../engine/oid.js';
import { Ring } from '../engine/ring.js';
import { snapshotRefText, type SnapshotRef, type VdiEntry } from '../engine/vdi.js';
import type { VdiLock } from '../engine/vdi-locks.js';
import type { FormatFlags } from '../store/meta.js';
import { systemClock, type Clock } from '../io/clock.js';
import { tcpTransport, type Transport } from '../io/transport.js';
import type { ClientAuth } from './auth.js';
import { RpcClient } from './client.js';
import { fileKeyAuth } from './key-auth.js';
import type {
  MdNodeData,
  ClusterInfoData,
  LocationData,
  NodeStatData,
  Op,
  PayloadArgs,
  RecoveryState,
  RequestFields,
  ResultOf,
  ThrottleData,
  VdiUsageData,
} from './protocol.js';

function refArg(ref: SnapshotRef): string | undefined {
  if (ref === undefined) return undefined;
  const { id, tag } = snapshotRefText(ref);
  return tag !== '' ? tag : String(id);
}

export interface SheepClientWorld {
  transport: Transport;
  clock: Clock;
  auth?: ClientAuth;
  onRequest?: (op: Op, elapsedMs: number, ok: boolean) => void;
}

/** TCP, the system clock, and the key of `keyFile` (-k), or the one found without it. */
export function sheepClientWorld(keyFile?: string): SheepClientWorld {
  return { transport: tcpTransport, clock: systemClock, auth: fileKeyAuth(keyFile) };
}

const realWorld = sheepClientWorld();

export class SheepClient implements ObjectIo {
  readonly rpc: RpcClient;
  /** When set, object requests go straight to the object's primary node (one hop less). */
  private direct: { ring: Ring<NodeInfo>; clients: Map<string, RpcClient> } | undefined;

  constructor(
    host: string,
    port: number,
    private readonly world: SheepClientWorld = realWorld,
  ) {
    this.rpc = new RpcClient({ ...world, host, port });
  }

  /**
   * Sends each object request to the node that holds the object's first copy, computed from the
   * current epoch's members (any node accepts any request, so a stale view only costs a hop).
   */
  async enableDirectIo(): Promise<void> {
    const info = await this.clusterInfo();
    const nodes = info.epochs[0]?.nodes;
    if (!nodes || nodes.length === 0) return;
    this.direct = { ring: new Ring(nodes), clients: new Map() };
  }

  private objectRpc(oid: Oid): RpcClient {
    if (!this.direct) return this.rpc;
    const primary = this.direct.ring.placement(oid, 1)[0];
    if (!primary) return this.rpc;
    let client = this.direct.clients.get(primary.id);
    if (!client) {
      client = new RpcClient({ ...this.world, host: primary.addr, port: primary.port });
      this.direct.clients.set(primary.id, client);
    }
    return client;
  }

  /**
   * An object call through the primary, falling back to our own sheep if it cannot be reached.
   * While the call is pending, our own sheep is asked every `directStallCheckMs` whether the
   * primary is still a member: one that hangs (SIGSTOP) is removed from the cluster within its
   * failure timeout, and the call then goes through our sheep instead of waiting out the rpc
   * timeout.
   */
  private async objectCall<K extends 'gw.read' | 'gw.write'>(
    oid: Oid,
    op: K,
    fields: RequestFields<K>,
    ...payload: PayloadArgs<K>
  ): Promise<ResultOf<K>> {
    const client = this.objectRpc(oid);
    if (client === this.rpc) return this.rpc.call(op, fields, ...payload);
    const watch = this.world.clock.every(directStallCheckMs, () => void this.dropDeparted());
    try {
      return await client.call(op, fields, ...payload);
    } catch (error) {
      if (!(error instanceof SdError) || error.code !== 'NETWORK') throw error;
      return this.rpc.call(op, fields, ...payload);
    } finally {
      watch.cancel();
    }
  }

  /** Re-plans direct I/O on the current members, closing the clients of nodes that left. */
  private async dropDeparted(): Promise<void> {
    const nodes = await this.clusterInfo().then((info) => info.epochs[0]?.nodes, () => undefined);
    const direct = this.direct;
    if (!nodes || nodes.length === 0 || !direct) return;
    const current = new Set(nodes.map((node) => node.id));
    const departed = [...direct.clients.keys()].filter((id) => !current.has(id));
    if (departed.length === 0) return;
    this.direct = { ring: new Ring(nodes), clients: direct.clients };
    for (const id of departed) {
      direct.clients.get(id)?.close(); // its pending calls fail with NETWORK and fall back
      direct.clients.delete(id);
    }
  }

  private call<K extends Op>(op: K, fields: RequestFields<K>, ...payload: PayloadArgs<K>): Promise<ResultOf<K>> {
    return this.rpc.call(op, fields, ...payload);
  }

  ping(): Promise<string> {
    return this.call('ping', {});
  }
  clusterInfo(): Promise<ClusterInfoData> {
    return this.call('cluster.info', {});
  }
  format(copies: number, blockSizeShift: number | undefined, reformat = false, flags: FormatFlags = {}): Promise<null> {
    return this.call('cluster.format', {
      copies,
      blockSizeShift,
      reformat,
      fixedVnodes: flags.fixedVnodes === true,
      recycleVids: flags.recycleVids === true,
      copyPolicy: flags.copyPolicy,
      strict: flags.strict === true,
    });
  }
  shutdown(): Promise<null> {
    return this.call('cluster.shutdown', {});
  }
  recover(action: 'force' | 'enable' | 'disable'): Promise<null> {
    return this.call('cluster.recover', { action });
  }
  nodeList(): Promise<NodeInfo[]> {
    return this.call('node.list', {});
  }
  nodeInfo(): Promise<{ nodes: NodeStatData[]; virtualBytes: number }> {
    return this.call('node.info', {});
  }
  mdInfo(all: boolean): Promise<MdNodeData[]> {
    return this.call('node.md-info', { all });
  }
  mdPlug(disks: readonly string[], plug: boolean): Promise<null> {
    return this.call(plug ? 'node.md-plug' : 'node.md-unplug', { disks: disks.join(',') });
  }
  setVnodes(vnodes: number): Promise<null> {
    return this.call('node.vnodes', { vnodes });
  }
  killNode(nodeId: string): Promise<null> {
    return this.call('node.kill', { node: nodeId });
  }
  recoveryStates(): Promise<Array<{ node: NodeInfo; state: RecoveryState | null }>> {
    return this.call('node.recovery', {});
  }
  setThrottle(max: number, interval: number): Promise<null> {
    return this.call('recovery.throttle', { max, interval });
  }
  getThrottle(): Promise<ThrottleData> {
    return this.call('recovery.get-throttle', {});
  }
  vdiCreate(name: string, sizeBytes: number, copies: number | undefined, hyper: boolean, copyPolicy?: number): Promise<VdiEntry> {
    return this.call('vdi.create', { name, size: sizeBytes, copies, copyPolicy, hyper });
  }
  vdiSnapshot(name: string, tag: string): Promise<VdiEntry> {
    return this.call('vdi.snapshot', { name, tag });
  }
  vdiClone(source: string, ref: SnapshotRef, target: string, copies: number | undefined): Promise<VdiEntry> {
    return this.call('vdi.clone', { source, snapshot: refArg(ref), target, copies });
  }
  vdiDelete(name: string, ref: SnapshotRef): Promise<null> {
    return this.call('vdi.delete', { name, snapshot: refArg(ref) });
  }
  vdiRollback(name: string, ref: SnapshotRef): Promise<VdiEntry> {
    return this.call('vdi.rollback', { name, snapshot: refArg(ref) });
  }
  vdiResize(name: string, sizeBytes: number): Promise<VdiEntry> {
    return this.call('vdi.resize', { name, size: sizeBytes });
  }
  lookup(name: string, ref: SnapshotRef): Promise<VdiEntry> {
    return this.call('vdi.lookup', { name, snapshot: refArg(ref) });
  }
  vdiList(): Promise<VdiUsageData[]> {
    return this.call('vdi.list', {});
  }
  vdiAll(): Promise<VdiEntry[]> {
    return this.call('vdi.all', {});
  }
  location(oid: Oid): Promise<LocationData> {
    return this.call('vdi.location', { oid });
  }
  setAttr(name: string, key: string, value: Buffer | null, exclusive: boolean): Promise<null> {
    const payload = value === null ? Buffer.from([0]) : Buffer.concat([Buffer.from([1]), value]);
    return this.call('vdi.setattr', { name, key, exclusive }, payload);
  }
  getAttr(name: string, key: string): Promise<Buffer> {
    return this.call('vdi.getattr', { name, key });
  }
  /** With `holder`: re-takes that lock (lock-keeper.ts). */
  lockVdi(name: string, clientText: string, shared: boolean, holder?: string): Promise<VdiLock> {
    return this.call('vdi.lock', { name, client: clientText, shared, holder });
  }
  releaseVdi(holder: string): Promise<null> {
    return this.call('vdi.release', { holder });
  }
  unlockVdi(name: string): Promise<null> {
    return this.call('vdi.unlock', { name });
  }
  vdiLocks(): Promise<VdiLock[]> {
    return this.call('vdi.locks', {});
  }
  alterVdiCopies(name: string, copies: number): Promise<{ old: number }> {
    return this.call('vdi.alter-copy', { name, copies });
  }
  alterClusterCopies(copies: number): Promise<{ old: number }> {
    return this.call('cluster.alter-copy', { copies });
  }

  // ObjectIo, through the sheep's gateway
  read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.objectCall(oid, 'gw.read', { oid, offset: offsetBytes, length: lengthBytes });
  }
  /** Always durable: a client of the sheep port has no flush yet (`cached` is ignored). */
  async write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean, options?: WriteOptions): Promise<void> {
    await this.objectCall(oid, 'gw.write', { oid, offset: offsetBytes, create, lock: options?.lock }, data);
  }
  async remove(oid: Oid, lock?: string): Promise<void> {
    await this.call('gw.remove', { oid, lock });
  }

  close(): void {
    this.rpc.close();
    for (const client of this.direct?.clients.values() ?? []) client.close();
  }
}
