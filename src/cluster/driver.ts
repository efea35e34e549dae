// The cluster-driver contract (DESIGN.md). Everything above it is driver-blind: `local` (one host,
// a shared directory) and `zookeeper` (many hosts) give the same guarantees.
import type { Json } from '../engine/json.js';

export type { Json };

/** A member as the cluster knows it. `id` is `addr:port`, unique in the cluster. */
export interface NodeInfo {
  id: string;
  addr: string;
  port: number;
  zone: number;
  /** 0 for a gateway node: it stores nothing. */
  vnodes: number;
  /** NBD port, 0 when NBD is off. */
  nbdPort: number;
}

/** The master's verdict on a joiner; `payload` is what every member, the joiner too, receives. */
export type JoinVerdict = { accept: true; payload: Json } | { accept: false; reason: string };

export interface ClusterHandlers {
  /**
   * Called on exactly one member, the master (the oldest member), for each join request, in event
   * order and before any later event is delivered. When there is no member yet the joiner itself
   * is the master and this runs on the joiner. Must be synchronous and decide from state only.
   */
  checkJoin(joiner: NodeInfo, request: Json): JoinVerdict;
  /** An accepted join, on every member including the joiner; `members` includes the joiner. */
  onJoin(joiner: NodeInfo, members: readonly NodeInfo[], payload: Json): void;
  /** A member left (clean exit, crash, lost session); `members` no longer includes it. */
  onLeave(node: NodeInfo, members: readonly NodeInfo[]): void;
  /** A notify or an unblock message, on every member, the sender too. */
  onNotify(from: NodeInfo, message: Json): void;
  /**
   * The coordinator became unreachable (false) or reachable again within the same membership
   * (true). While unreachable this node may be reported left at any moment, so it must accept no
   * write: the rest of the cluster may already be moving on. Drivers that cannot lose their
   * coordinator (`local`) never call it.
   */
  onCoordinator?(reachable: boolean): void;
}

/**
 * Events reach every member in one total order. Handlers run to completion, one event at a time.
 */
export interface ClusterDriver {
  /**
   * Asks to join. Resolves with the verdict once the join is decided: on accept, `onJoin` for this
   * node has already run, and every later event is delivered. On refusal the node is not a member.
   */
  join(self: NodeInfo, request: Json, handlers: ClusterHandlers): Promise<JoinVerdict>;
  /** Leaves cleanly: the others see `onLeave`. Idempotent. */
  leave(): Promise<void>;
  /** Broadcast `message` to all members (the sender too) in the total order. */
  notify(message: Json): Promise<void>;
  /**
   * Enter the one cluster-wide critical section. Resolves when this node holds it. Released by
   * `unblock` or when the holder leaves (crash included).
   */
  block(): Promise<void>;
  /** Leave the critical section; `message` is delivered as a notify in the same step. */
  unblock(message: Json): Promise<void>;
  /** Resolves once every event committed before the call has been delivered to this node. */
  sync(): Promise<void>;
}
