// One multiplexed rpc connection per peer sheep, made on first use.
import type { NodeInfo } from '../cluster/driver.js';
import { RpcClient } from '../rpc/connection.js';

export class Peers {
  private readonly clients = new Map<string, RpcClient>();

  get(node: NodeInfo): RpcClient {
    let client = this.clients.get(node.id);
    if (!client) {
      client = new RpcClient(node.addr, node.port);
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
