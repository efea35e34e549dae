// dog's and sheepfs's view of a sheep: typed calls over one rpc connection.
import type { NodeInfo } from '../cluster/driver.js';
import type { Oid } from '../engine/oid.js';
import type { ObjectIo } from '../engine/object-io.js';
import { snapshotRefText, type SnapshotRef, type VdiEntry } from '../engine/vdi.js';
import { SdError } from '../engine/errors.js';
import { Ring } from '../engine/ring.js';
import { RpcClient } from '../rpc/connection.js';
import type { ClusterInfoData, NodeStatData, VdiUsageData } from './format.js';

function refArg(ref: SnapshotRef): string | undefined {
  if (ref === undefined) return undefined;
  const { id, tag } = snapshotRefText(ref);
  return tag !== '' ? tag : String(id);
}

export class SheepClient implements ObjectIo {
  readonly rpc: RpcClient;
  /** When set, object requests go straight to the object's primary node (one hop less). */
  private direct: { ring: Ring<NodeInfo>; clients: Map<string, RpcClient> } | undefined;

  constructor(host: string, port: number) {
    this.rpc = new RpcClient(host, port);
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
      client = new RpcClient(primary.addr, primary.port);
      this.direct.clients.set(primary.id, client);
    }
    return client;
  }

  /** An object call through the primary, falling back to our own sheep if it cannot be reached. */
  private async objectCall(oid: Oid, op: string, args: object, payload?: Buffer) {
    const client = this.objectRpc(oid);
    if (client === this.rpc) return this.rpc.call(op, args, payload);
    try {
      return await client.call(op, args, payload);
    } catch (error) {
      if (!(error instanceof SdError) || error.code !== 'NETWORK') throw error;
      return this.rpc.call(op, args, payload);
    }
  }

  private async value<T>(op: string, args: object = {}): Promise<T> {
    return (await this.rpc.call(op, args)).value as T;
  }

  ping(): Promise<string> {
    return this.value('ping');
  }
  clusterInfo(): Promise<ClusterInfoData> {
    return this.value('cluster.info');
  }
  format(copies: number, blockSizeShift: number | undefined): Promise<null> {
    return this.value('cluster.format', { copies, blockSizeShift });
  }
  shutdown(): Promise<null> {
    return this.value('cluster.shutdown');
  }
  recover(action: 'force' | 'enable' | 'disable'): Promise<null> {
    return this.value('cluster.recover', { action });
  }
  nodeList(): Promise<NodeInfo[]> {
    return this.value('node.list');
  }
  nodeInfo(): Promise<{ nodes: NodeStatData[]; virtualBytes: number }> {
    return this.value('node.info');
  }
  killNode(nodeId: string): Promise<null> {
    return this.value('node.kill', { node: nodeId });
  }
  recoveryStates(): Promise<Array<{ node: NodeInfo; state: { running: boolean; total: number; done: number } | null }>> {
    return this.value('node.recovery');
  }
  setThrottle(max: number, interval: number): Promise<null> {
    return this.value('recovery.throttle', { max, interval });
  }
  getThrottle(): Promise<{ maxObjects: number; intervalMs: number }> {
    return this.value('recovery.get-throttle');
  }
  vdiCreate(name: string, sizeBytes: number, copies: number | undefined, hyper: boolean): Promise<VdiEntry> {
    return this.value('vdi.create', { name, size: sizeBytes, copies, hyper });
  }
  vdiSnapshot(name: string, tag: string): Promise<VdiEntry> {
    return this.value('vdi.snapshot', { name, tag });
  }
  vdiClone(source: string, ref: SnapshotRef, target: string, copies: number | undefined): Promise<VdiEntry> {
    return this.value('vdi.clone', { source, snapshot: refArg(ref), target, copies });
  }
  vdiDelete(name: string, ref: SnapshotRef): Promise<null> {
    return this.value('vdi.delete', { name, snapshot: refArg(ref) });
  }
  vdiRollback(name: string, ref: SnapshotRef): Promise<VdiEntry> {
    return this.value('vdi.rollback', { name, snapshot: refArg(ref) });
  }
  vdiResize(name: string, sizeBytes: number): Promise<VdiEntry> {
    return this.value('vdi.resize', { name, size: sizeBytes });
  }
  lookup(name: string, ref: SnapshotRef): Promise<VdiEntry> {
    return this.value('vdi.lookup', { name, snapshot: refArg(ref) });
  }
  vdiList(): Promise<VdiUsageData[]> {
    return this.value('vdi.list');
  }
  vdiAll(): Promise<VdiEntry[]> {
    return this.value('vdi.all');
  }
  location(oid: Oid): Promise<{ oid: string; copies: number; nodeCount: number; placement: string[]; holders: string[] }> {
    return this.value('vdi.location', { oid });
  }

  // ObjectIo, through the sheep's gateway
  async read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return (await this.objectCall(oid, 'gw.read', { oid, offset: offsetBytes, length: lengthBytes })).payload ?? Buffer.alloc(0);
  }
  async write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean): Promise<void> {
    await this.objectCall(oid, 'gw.write', { oid, offset: offsetBytes, create }, data);
  }
  async remove(oid: Oid): Promise<void> {
    await this.rpc.call('gw.remove', { oid });
  }

  close(): void {
    this.rpc.close();
    for (const client of this.direct?.clients.values() ?? []) client.close();
  }
}
