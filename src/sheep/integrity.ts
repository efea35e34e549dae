// Data integrity of one sheep, wired from its parts: check and repair (object-check.ts),
// scrubbing (scrub.ts), the counters for `--metrics` (metrics.ts), and the ops that reach them.
import { SdError } from '../engine/errors.js';
import type { Clock } from '../io/clock.js';
import type { Log } from '../io/log.js';
import type { LocalStore } from '../store/md-store.js';
import type { Handler } from '../rpc/server.js';
import type { NodeInfo } from '../cluster/driver.js';
import type { Op, ScrubState } from '../rpc/protocol.js';
import type { Gateway } from './gateway.js';
import type { Group } from './group.js';
import { Metrics, renderMetrics } from './metrics.js';
import { ObjectCheck } from './object-check.js';
import type { Peers } from './peers.js';
import type { Placement } from './placement.js';
import type { Recovery } from './recovery.js';
import { Scrub } from './scrub.js';

export interface IntegrityDeps {
  group: Group;
  store: LocalStore;
  placement: Placement;
  gateway: Gateway;
  peers: Peers;
  recovery: Recovery;
  clock: Clock;
  log: Log;
  /** Where the store's files are, for the bytes they take. */
  usedBytes: () => Promise<number>;
}

type OpsOf<K extends Op> = { readonly [Key in K]: Handler<Key> };

export class Integrity {
  readonly metrics = new Metrics();
  readonly check: ObjectCheck;
  readonly scrub: Scrub;

  constructor(private readonly deps: IntegrityDeps) {
    const { group, gateway, peers, placement, log, recovery } = deps;
    this.check = new ObjectCheck(group, gateway, peers, placement, log);
    this.check.repairLocal = (oid, source) => recovery.catchUp.repairFrom(oid, source);
    this.scrub = new Scrub({ ...deps, check: this.check });
    const damaged = gateway.onDamaged;
    gateway.onDamaged = (oid, problem) => {
      this.metrics.checksumFailures += 1;
      damaged(oid, problem);
    };
    recovery.catchUp.onRepaired = () => {
      this.metrics.repairs += 1;
    };
  }

  stop(): void {
    this.scrub.stop();
  }

  /** The Prometheus text of this node, now. */
  async scrape(): Promise<string> {
    const { group, store, recovery } = this.deps;
    const [objects, storedBytes] = await Promise.all([store.list().then((oids) => oids.length), this.deps.usedBytes()]);
    return renderMetrics(this.metrics, {
      epoch: group.epoch,
      objects,
      storedBytes,
      recovery: recovery.state,
      scrub: this.scrub.state,
    });
  }

  private async scrubStates(): Promise<Array<{ node: NodeInfo; state: ScrubState | null }>> {
    const { group, peers } = this.deps;
    return Promise.all(
      group.members.map(async (node) => {
        if (node.id === group.self.id) return { node, state: this.scrub.state };
        try {
          return { node, state: await peers.ask(node, 'peer.scrub', {}) };
        } catch {
          return { node, state: null };
        }
      }),
    );
  }

  /** The pace goes to every member (a node that joins later scrubs at the default pace). */
  private async setScrubThrottle(max: number, interval: number): Promise<null> {
    const { group, peers } = this.deps;
    const failed: string[] = [];
    await Promise.all(
      group.members.map(async (node) => {
        if (node.id === group.self.id) return this.scrub.setThrottle({ maxObjects: max, intervalMs: interval });
        try {
          await peers.ask(node, 'peer.scrub-throttle', { max, interval });
        } catch {
          failed.push(node.id);
        }
      }),
    );
    if (failed.length > 0) throw new SdError('NETWORK', `could not reach ${failed.sort().join(', ')}`);
    return null;
  }

  handlers(): OpsOf<'object.check' | 'scrub.state' | 'scrub.throttle' | 'scrub.get-throttle'> {
    return {
      'object.check': async (r) => this.check.check(r.oid, r.existOnly),
      'scrub.state': async () => this.scrubStates(),
      'scrub.throttle': async (r) => this.setScrubThrottle(r.max, r.interval),
      'scrub.get-throttle': async () => this.scrub.throttle,
    };
  }

  peerHandlers(): OpsOf<'peer.repair' | 'peer.scrub' | 'peer.scrub-throttle'> {
    const { recovery } = this.deps;
    return {
      'peer.repair': async (r) => {
        await recovery.catchUp.repairFrom(r.oid, r.source);
        return null;
      },
      'peer.scrub': async () => this.scrub.state,
      'peer.scrub-throttle': async (r) => {
        this.scrub.setThrottle({ maxObjects: r.max, intervalMs: r.interval });
        return null;
      },
    };
  }
}
