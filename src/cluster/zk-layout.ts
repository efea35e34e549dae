// The pure parts of the `zookeeper` driver: its command-line spec, the znode layout, and the
// filter that makes a re-sent queue entry harmless. See docs/zookeeper-driver.md.
import { SdError } from '../engine/errors.js';
import type { LogEvent } from './local-state.js';

export interface ZkSpec {
  servers: Array<{ host: string; port: number }>;
  sessionTimeoutMs: number;
  /** The cluster's znode; several clusters can share one ensemble under different roots. */
  root: string;
}

export const zkSessionTimeoutSecDefault = 10;
/** ZooKeeper's own bounds are 2 and 20 ticks; these are ours. */
const timeoutSecMin = 1;
const timeoutSecMax = 300;
const serversMax = 32;

/**
 * `HOST:PORT[,HOST:PORT...][/ROOT][,timeout=SECONDS]`, the part after `zookeeper:`; IPv6 as
 * [ADDR]:PORT; the last server may carry the cluster's root znode, as in ZooKeeper's own
 * connect strings (default /sheepdog).
 */
export function parseZkSpec(text: string): ZkSpec {
  const bad = (why: string): SdError => new SdError('INVALID_ARGUMENT', `invalid --cluster 'zookeeper:${text}': ${why}`);
  const servers: ZkSpec['servers'] = [];
  let timeoutSec = zkSessionTimeoutSecDefault;
  let root = zkRootDefault;
  for (let part of text.split(',')) {
    if (part.startsWith('timeout=')) {
      const value = part.slice('timeout='.length);
      if (!/^\d+$/.test(value) || Number(value) < timeoutSecMin || Number(value) > timeoutSecMax) {
        throw bad(`timeout must be an integer from ${timeoutSecMin} to ${timeoutSecMax} seconds`);
      }
      timeoutSec = Number(value);
      continue;
    }
    const slash = part.indexOf('/');
    if (slash >= 0) {
      root = part.slice(slash).replace(/\/+$/, '');
      part = part.slice(0, slash);
      if (!/^(\/[A-Za-z0-9._-]+)+$/.test(root)) throw bad(`'${root}' is not a znode path like /sheepdog`);
    }
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(part);
    const port = Number(match?.[3]);
    if (match === null || port < 1 || port > 65535) throw bad(`'${part}' is not HOST:PORT`);
    servers.push({ host: match[1] ?? match[2]!, port });
  }
  if (servers.length === 0) throw bad('no ZooKeeper server given');
  if (servers.length > serversMax) throw bad(`more than ${serversMax} servers`);
  return { servers, sessionTimeoutMs: timeoutSec * 1000, root };
}

/** Every znode of one cluster lives under its root: /sheepdog unless the spec names another. */
export const zkRootDefault = '/sheepdog';
const queuePrefix = 'ev-';

export interface ZkLayout {
  root: string;
  /** Persistent sequential entries, one per event, never deleted: their order is the total order. */
  queueDir: string;
  /** One ephemeral node per live incarnation, named by it: its session is its liveness. */
  membersDir: string;
  /** Where a new event is created (ZooKeeper appends the sequence number). */
  queueAppendPath: string;
  queueEntryPath(index: number): string;
  memberPath(inc: string): string;
}

export function zkLayout(root: string): ZkLayout {
  const queueDir = `${root}/queue`;
  const membersDir = `${root}/members`;
  return {
    root,
    queueDir,
    membersDir,
    queueAppendPath: `${queueDir}/${queuePrefix}`,
    // ZooKeeper's sequence suffix: ten digits, zero-padded.
    queueEntryPath: (index) => `${queueDir}/${queuePrefix}${String(index).padStart(10, '0')}`,
    memberPath: (inc) => `${membersDir}/${inc}`,
  };
}

/** The root and every ancestor, outermost first: each must exist before its children. */
export function zkAncestry(root: string): string[] {
  const parts = root.split('/').filter((p) => p !== '');
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
}

/**
 * Drops a queue entry that repeats one already applied. A create whose reply was lost with the
 * connection is sent again, and may so be in the queue twice; an incarnation's sequenced events
 * (notify, block, unblock) reach the queue in its seq order (ZooKeeper keeps a session's order),
 * so one whose seq is not above the last applied of its incarnation is a repeat. The other events
 * are idempotent in the state machine already (a second join_request, response or leave is
 * ignored there).
 */
export class RepeatFilter {
  private readonly lastSeq = new Map<string, number>();

  fresh(event: LogEvent): boolean {
    if (event.t !== 'notify' && event.t !== 'block' && event.t !== 'unblock') return true;
    const last = this.lastSeq.get(event.inc);
    if (last !== undefined && event.seq <= last) return false;
    this.lastSeq.set(event.inc, event.seq);
    return true;
  }
}
