// One entry per operation (as the original's ops.c), typed against the protocol: the request a
// handler gets is already checked (rpc/decode.ts). Handlers reach the daemon through the narrow
// services below, never the Sheep class, so this file and sheep.ts do not import each other.
import { epochHoldMs, registryDurableWaitMs } from '../engine/limits.js';
import { SdError } from '../engine/errors.js';
import type { Clock } from '../io/clock.js';
import { encodeOids } from '../rpc/oid-list.js';
import { asVid } from '../engine/oid.js';
import type { PeerOp } from '../rpc/protocol.js';
import type { Handler, Handlers } from '../rpc/server.js';
import { parseSnapshotRef } from '../engine/vdi.js';
import type { AdminService } from './admin.js';
import type { AttrService } from './attr-service.js';
import type { CopiesService } from './copies-service.js';
import type { FormatService } from './format-service.js';
import type { LockService } from './lock-service.js';
import type { VnodesService } from './vnodes-service.js';
import type { MdService } from './md-service.js';
import { admitPeerRequest } from './epoch-fence.js';
import { ecConfig, parseGeneration } from './ec-config.js';
import type { FormatFlags } from '../store/meta.js';
import type { Gateway } from './gateway.js';
import type { Group } from './group.js';
import type { Recovery } from './recovery.js';
import type { VdiService } from './vdi-service.js';
import type { Placement } from './placement.js';
import type { ObjectStore } from '../store/object-store.js';
import type { Integrity } from './integrity.js';

export interface Services {
  admin: AdminService;
  vdi: VdiService;
  attrs: AttrService;
  copies: CopiesService;
  locks: LockService;
  format: FormatService;
  vnodes: VnodesService;
  md: MdService;
  gateway: Gateway;
  placement: Pick<Placement, 'objectSizeBytes' | 'contentBytes'>;
  group: Pick<Group, 'registry' | 'throttle' | 'self' | 'registryDurable' | 'epoch' | 'waitForEpoch'>;
  recovery: Pick<Recovery, 'state' | 'suspectsOf' | 'reconcileState' | 'noteWrite'>;
  store: Pick<ObjectStore, 'remove' | 'exists'>;
  integrity: Pick<Integrity, 'handlers' | 'peerHandlers'>;
  clock: Clock;
}

/** The peer ops' handlers, each behind the epoch fence. */
type PeerHandlers = { readonly [K in PeerOp]: Handler<K> };

function fenced(group: Services['group'], handlers: PeerHandlers): PeerHandlers {
  const wrap = <K extends PeerOp>(handler: Handler<K>): Handler<K> =>
    async (request, payload) => {
      await admitPeerRequest(group, request, epochHoldMs);
      return handler(request, payload);
    };
  const entries = (Object.keys(handlers) as PeerOp[]).map((op) => [op, wrap(handlers[op] as Handler<PeerOp>)]);
  // Same keys, each handler wrapped with its own type.
  return Object.fromEntries(entries) as unknown as PeerHandlers;
}

/** A format request's choices besides copies and size, the erasure coding checked once here. */
function formatFlags(r: { copies: number; fixedVnodes: boolean; recycleVids: boolean; copyPolicy?: number | undefined; strict: boolean }): FormatFlags {
  return { fixedVnodes: r.fixedVnodes, recycleVids: r.recycleVids, ...ecConfig(r) };
}

export function makeHandlers(s: Services): Handlers {
  /** A replica request on behalf of a client (not recovery's own traffic): recovery yields to it. */
  const markClientIo = (request: { recovery: boolean }) => {
    if (!request.recovery) s.gateway.lastClientIoMs = s.clock.nowMs();
  };
  return {
    ping: async () => 'pong',

    'cluster.info': async () => s.admin.clusterInfo(),
    'cluster.format': async (r) =>
      r.reformat ? s.format.reformat(r.copies, r.blockSizeShift, formatFlags(r)) : s.admin.format(r.copies, r.blockSizeShift, formatFlags(r)),
    'cluster.shutdown': async () => s.admin.shutdownCluster(),
    'cluster.recover': async (r) => s.admin.recover(r.action),

    'node.list': async () => s.admin.nodeList(),
    'node.info': async () => s.admin.nodeInfo(),
    'node.kill': async (r) => s.admin.killNode(r.node),
    'node.vnodes': async (r) => s.vnodes.set(r.vnodes),
    'node.recovery': async () => s.admin.recoveryStates(),
    'recovery.throttle': async (r) => s.admin.setThrottle(r.max, r.interval),
    'recovery.get-throttle': async () => s.group.throttle,
    'node.stat': async () => s.admin.requestStats(),
    'node.log-level': async (r) => s.admin.logLevel(r.level),
    'cluster.reweight': async () => s.admin.reweight(),
    'node.md-info': async (r) => s.md.info(r.all),
    'node.md-plug': async (r) => s.md.plug(r.disks),
    'node.md-unplug': async (r) => s.md.unplug(r.disks),

    'vdi.create': async (r) => s.vdi.create({ name: r.name, sizeBytes: r.size, copies: r.copies, copyPolicy: r.copyPolicy, hyper: r.hyper }),
    'vdi.snapshot': async (r) => s.vdi.snapshot(r.name, r.tag ?? ''),
    'vdi.clone': async (r) => s.vdi.clone(r.source, parseSnapshotRef(r.snapshot), r.target, r.copies),
    'vdi.delete': async (r) => {
      await s.vdi.remove(r.name, parseSnapshotRef(r.snapshot));
      return null;
    },
    'vdi.rollback': async (r) => s.vdi.rollback(r.name, parseSnapshotRef(r.snapshot)),
    'vdi.resize': async (r) => s.vdi.resize(r.name, r.size),
    'vdi.lookup': async (r) => s.vdi.lookup(r.name, parseSnapshotRef(r.snapshot)),
    'vdi.list': async () => s.vdi.usage(),
    'vdi.all': async () => s.group.registry.all(),
    'vdi.location': async (r) => s.admin.location(r.oid),
    'vdi.setattr': async (r, data) => s.attrs.set(r.name, r.key, data[0] === 1 ? data.subarray(1) : null, r.exclusive),
    'vdi.getattr': async (r) => s.attrs.get(r.name, r.key),
    'vdi.alter-copy': async (r) => s.copies.alterVdi(r.name, r.copies),
    'cluster.alter-copy': async (r) => s.copies.alterCluster(r.copies),
    'vdi.lock': async (r) => s.locks.acquire(r.name, r.client, r.shared, r.holder),
    'vdi.release': async (r) => s.locks.release(r.holder),
    'vdi.unlock': async (r) => s.locks.unlock(r.name),
    'vdi.locks': async () => s.locks.list(),

    // A client names objects of VDIs that exist, within their size (vdi-service.ts).
    'gw.read': async (r) => {
      await s.vdi.checkClientObject(r.oid, false);
      return s.gateway.read(r.oid, r.offset, r.length);
    },
    'gw.write': async (r, data) => {
      await s.vdi.checkClientObject(r.oid, true);
      if (r.lock !== undefined) await s.locks.requireHeld(r.lock);
      await s.gateway.write(r.oid, r.offset, data, r.create);
      return null;
    },
    'gw.remove': async (r) => {
      if (r.lock !== undefined) await s.locks.requireHeld(r.lock);
      await s.gateway.remove(r.oid);
      return null; // a member that was away keeps its copy; the reclaim after recovery takes it
    },

    ...s.integrity.handlers(),
    ...peerHandlers(s, markClientIo),
  };
}

function peerHandlers(s: Services, markClientIo: (request: { recovery: boolean }) => void): PeerHandlers {
  return fenced(s.group, {
    'peer.read': async (r) => {
      markClientIo(r);
      return s.gateway.localRead(r.oid, r.offset, r.length, r.force);
    },
    'peer.checksum': async (r) =>
      s.gateway.localChecksum(r.oid, s.placement.contentBytes(r.oid), r.force, r.verify),
    'peer.write': async (r, data) => {
      markClientIo(r);
      s.recovery.noteWrite(r.from, r.oid);
      await s.gateway.localWrite(r.oid, r.offset, data, r.create, r.sums, r.cached);
      return null;
    },
    'peer.flush': async (r) => s.gateway.localFlush(asVid(r.vid)),
    'peer.remove': async (r) => s.store.remove(r.oid),
    'peer.exists': async (r) => s.store.exists(r.oid),
    'peer.ec-commit': async (r) => s.gateway.commitStripLocal(r.oid, parseGeneration(r.generation)),
    'peer.list': async (r) => encodeOids(await s.gateway.listObjects(s.group.self, r.inodesOnly)),
    'peer.recovery': async () => s.recovery.state,
    'peer.stat': async () => s.admin.localStat(),
    'peer.md-info': async () => (await s.md.info(false))[0]!.disks,
    'peer.suspects': async (r) => {
      const suspects = s.recovery.suspectsOf(r.epoch);
      if (suspects === undefined) throw new SdError('BUSY', 'this node has not reached that epoch yet');
      return suspects === 'all' ? { value: 'all', data: Buffer.alloc(0) } : { value: null, data: encodeOids([...suspects]) };
    },
    'peer.reconcile': async (r) => s.recovery.reconcileState(r.oid, r.epoch),
    'peer.kill': async () => s.admin.killNode(s.group.self.id),
    'peer.wipe': async () => s.format.wipeLocal(),
    'peer.registry-durable': async (r) => s.group.registryDurable(r.version, registryDurableWaitMs),
    ...s.integrity.peerHandlers(),
  });
}
