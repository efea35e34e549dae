// One multiplexed rpc connection per peer sheep, made on first use. Every request is stamped with
// this sheep's current epoch and node id, which the receiver fences on (epoch-fence.ts).
import type { NodeInfo } from '../cluster/driver.js';
import type { Clock } from '../io/clock.js';
import type { Transport } from '../io/transport.js';
import { RpcClient } from '../rpc/client.js';
import type { PayloadArgs, PeerOp, PeerRequestFields, RequestFields, ResultOf } from '../rpc/protocol.js';

export interface PeerStamp {
  epoch: number;
  from: string;
}

export class Peers {
  private readonly clients = new Map<string, RpcClient>();

  constructor(
    private readonly world: { transport: Transport; clock: Clock },
    private readonly stamp: () => PeerStamp,
  ) {}

  call<K extends PeerOp>(node: NodeInfo, op: K, fields: PeerRequestFields<K>, ...payload: PayloadArgs<K>): Promise<ResultOf<K>> {
    // The peer fields are exactly what Omit took away from RequestFields<K>.
    const stamped = { ...fields, ...this.stamp() } as unknown as RequestFields<K>;
    return this.client(node).call(op, stamped, ...payload);
  }

  private client(node: NodeInfo): RpcClient {
    let client = this.clients.get(node.id);
    if (!client) {
      client = new RpcClient({ ...this.world, host: node.addr, port: node.port });
      this.clients.set(node.id, client);
    }
    return client;
  }

  /** Drops the connection of a node that left, so a returning node gets a fresh one. */
  forget(nodeId: string): void {
    this.clients.get(nodeId)?.close();
    this.clients.delete(nodeId);
  }

  knownIds(): string[] {
    return [...this.clients.keys()];
  }

  closeAll(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
