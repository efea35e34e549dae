// One multiplexed rpc connection per peer sheep, made on first use. Every request is stamped with
// this sheep's current epoch and node id, which the receiver fences on (epoch-fence.ts). A peer
// that answers OLD_EPOCH makes us wait (bounded) until our own group reaches its epoch. Each
// connection proves the cluster key this node holds (rpc/auth.ts).
import type { NodeInfo } from '../cluster/driver.js';
import { SdError, asSdError } from '../engine/errors.js';
import { epochCatchUpMs } from '../engine/limits.js';
import type { Clock } from '../io/clock.js';
import type { Random } from '../io/random.js';
import type { Transport } from '../io/transport.js';
import { keyIdOf, type ClientAuth } from '../rpc/auth.js';
import { RpcClient } from '../rpc/client.js';
import type { PayloadArgs, PeerOp, PeerRequestFields, RequestFields, ResultOf } from '../rpc/protocol.js';

/** What the peers need of the group: our epoch, our id, and a way to wait for a newer epoch. */
export type PeerGroup = {
  readonly epoch: number;
  readonly self: NodeInfo;
  readonly key: Buffer | undefined;
  waitForEpoch(epoch: number, timeoutMs: number): Promise<boolean>;
};

/** The key a peer connection proves: the one this node holds, when the peer names the same. */
function groupAuth(random: Random, group: Pick<PeerGroup, 'key'>): ClientAuth {
  return {
    random,
    keyFor(keyId) {
      const key = group.key;
      if (!key) throw new SdError('AUTH', 'this node holds no cluster key yet');
      if (keyIdOf(key) !== keyId) throw new SdError('AUTH', `the peer holds another cluster key (key id ${keyId}; ours is ${keyIdOf(key)})`);
      return key;
    },
  };
}

/** Requests to one peer whose answer does not depend on placement are retried this often. */
export const peerEpochRetriesMax = 3;

export class Peers {
  private readonly clients = new Map<string, RpcClient>();
  private readonly auth: ClientAuth;

  constructor(
    private readonly world: { transport: Transport; clock: Clock; random: Random },
    private readonly group: PeerGroup,
  ) {
    this.auth = groupAuth(world.random, group);
  }

  /**
   * A request whose target came from placement. On OLD_EPOCH it waits until our group reaches
   * the peer's epoch, then rethrows: the caller re-plans under the new epoch and retries.
   */
  async call<K extends PeerOp>(node: NodeInfo, op: K, fields: PeerRequestFields<K>, ...payload: PayloadArgs<K>): Promise<ResultOf<K>> {
    // The peer fields are exactly what Omit took away from RequestFields<K>.
    const stamped = { ...fields, epoch: this.group.epoch, from: this.group.self.id } as unknown as RequestFields<K>;
    try {
      return await this.client(node).call(op, stamped, ...payload);
    } catch (error) {
      const sd = asSdError(error);
      if (sd.code === 'OLD_EPOCH' && sd.epoch !== undefined) await this.group.waitForEpoch(sd.epoch, epochCatchUpMs);
      throw sd;
    }
  }

  /** A request to this very peer whatever the epoch (stat, listing, a copy's checksum): retried. */
  async ask<K extends PeerOp>(node: NodeInfo, op: K, fields: PeerRequestFields<K>, ...payload: PayloadArgs<K>): Promise<ResultOf<K>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(node, op, fields, ...payload);
      } catch (error) {
        if (asSdError(error).code !== 'OLD_EPOCH' || attempt >= peerEpochRetriesMax) throw error;
      }
    }
  }

  private client(node: NodeInfo): RpcClient {
    let client = this.clients.get(node.id);
    if (!client) {
      client = new RpcClient({ transport: this.world.transport, clock: this.world.clock, auth: this.auth, host: node.addr, port: node.port });
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
