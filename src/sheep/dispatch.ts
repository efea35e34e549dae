// One entry per operation (as the original's ops.c): argument checks, then the work.
import { SdError } from '../engine/errors.js';
import {
  blockSizeShiftMax,
  blockSizeShiftMin,
  copiesMax,
  hyperObjectsMax,
  objectSizeBytesMax,
  snapshotTagBytesMax,
  vdiNameBytesMax,
} from '../engine/limits.js';
import { parseSnapshotRef } from '../engine/vdi.js';
import {
  argBool,
  argInt,
  argOid,
  argOptionalInt,
  argOptionalString,
  argPayload,
  argSize,
  argString,
} from '../rpc/args.js';
import type { Reply } from '../rpc/connection.js';
import { encodeOids } from '../rpc/oid-list.js';
import { registryDurableWaitMs } from '../engine/limits.js';
import { checksumOf, throttleIntervalMsLimit, throttleMaxObjectsLimit } from './recovery.js';
import type { Sheep } from './sheep.js';

type Header = Record<string, unknown>;
type Op = (sheep: Sheep, header: Header, payload: Buffer | undefined) => Promise<Reply>;

const sizeMax = hyperObjectsMax * 2 ** blockSizeShiftMax;

function value(v: unknown): Reply {
  return { value: v, payload: undefined };
}

function snapshotArg(header: Header) {
  return parseSnapshotRef(argOptionalString(header, 'snapshot', snapshotTagBytesMax));
}

/** A replica request on behalf of a client (not recovery's own traffic): recovery yields to it. */
function markClientIo(sheep: Sheep, header: Header): null {
  if (!argBool(header, 'recovery')) sheep.gateway.lastClientIoMs = Date.now();
  return null;
}

export const ops: Record<string, Op> = {
  ping: async () => value('pong'),

  'cluster.info': async (sheep) => value(sheep.clusterInfo()),
  'cluster.format': async (sheep, h) =>
    value(await sheep.format(argInt(h, 'copies', 1, copiesMax), argOptionalInt(h, 'blockSizeShift', blockSizeShiftMin, blockSizeShiftMax))),
  'cluster.shutdown': async (sheep) => value(await sheep.shutdownCluster()),
  'cluster.recover': async (sheep, h) => {
    const action = argString(h, 'action', 16);
    if (action !== 'force' && action !== 'enable' && action !== 'disable') {
      throw new SdError('INVALID_ARGUMENT', `unknown recover action '${action}'`);
    }
    return value(await sheep.recover(action));
  },

  'node.list': async (sheep) => value(sheep.nodeList()),
  'node.info': async (sheep) => value(await sheep.nodeInfo()),
  'node.kill': async (sheep, h) => value(await sheep.killNode(argString(h, 'node', 64))),

  'vdi.create': async (sheep, h) =>
    value(
      await sheep.vdi.create({
        name: argString(h, 'name', vdiNameBytesMax * 4),
        sizeBytes: argSize(h, 'size', sizeMax),
        copies: argOptionalInt(h, 'copies', 0, 1000),
        hyper: argBool(h, 'hyper'),
      }),
    ),
  'vdi.snapshot': async (sheep, h) =>
    value(await sheep.vdi.snapshot(argString(h, 'name', vdiNameBytesMax * 4), argOptionalString(h, 'tag', snapshotTagBytesMax * 4) ?? '')),
  'vdi.clone': async (sheep, h) =>
    value(
      await sheep.vdi.clone(
        argString(h, 'source', vdiNameBytesMax * 4),
        snapshotArg(h),
        argString(h, 'target', vdiNameBytesMax * 4),
        argOptionalInt(h, 'copies', 0, 1000),
      ),
    ),
  'vdi.delete': async (sheep, h) => value(await sheep.vdi.remove(argString(h, 'name', vdiNameBytesMax * 4), snapshotArg(h))),
  'vdi.rollback': async (sheep, h) =>
    value(await sheep.vdi.rollback(argString(h, 'name', vdiNameBytesMax * 4), snapshotArg(h))),
  'vdi.resize': async (sheep, h) =>
    value(await sheep.vdi.resize(argString(h, 'name', vdiNameBytesMax * 4), argSize(h, 'size', sizeMax))),
  'vdi.lookup': async (sheep, h) => value(await sheep.vdi.lookup(argString(h, 'name', vdiNameBytesMax * 4), snapshotArg(h))),
  'vdi.list': async (sheep) => value(await sheep.vdi.usage()),
  'vdi.all': async (sheep) => value(sheep.group.registry.all()),
  'vdi.location': async (sheep, h) => value(await sheep.location(argOid(h))),

  'gw.read': async (sheep, h) => ({
    value: null,
    payload: await sheep.gateway.read(argOid(h), argInt(h, 'offset', 0, objectSizeBytesMax), argInt(h, 'length', 1, objectSizeBytesMax)),
  }),
  'gw.write': async (sheep, h, p) =>
    value(await sheep.gateway.write(argOid(h), argInt(h, 'offset', 0, objectSizeBytesMax), argPayload(p, objectSizeBytesMax), argBool(h, 'create'))),
  'gw.remove': async (sheep, h) => value(await sheep.gateway.remove(argOid(h))),

  'peer.read': async (sheep, h) => ({
    value: markClientIo(sheep, h),
    payload: await sheep.gateway.localRead(
      argOid(h),
      argInt(h, 'offset', 0, objectSizeBytesMax),
      argInt(h, 'length', 1, objectSizeBytesMax),
      argBool(h, 'force'),
    ),
  }),
  'peer.checksum': async (sheep, h) => {
    const oid = argOid(h);
    const data = await sheep.gateway.localRead(oid, 0, sheep.gateway.objectSizeBytes(oid), argBool(h, 'force'));
    return value(checksumOf(data));
  },
  'peer.list': async (sheep, h) => ({
    value: null,
    payload: encodeOids(await sheep.gateway.listObjects(sheep.config.self, argBool(h, 'inodesOnly'))),
  }),
  'peer.recovery': async (sheep) => value(sheep.recovery.state),
  'peer.suspects': async (sheep, h) => {
    const suspects = sheep.recovery.suspectsOf(argInt(h, 'epoch', 0, 2 ** 32));
    if (suspects === undefined) throw new SdError('BUSY', 'this node has not reached that epoch yet');
    return suspects === 'all' ? value('all') : { value: null, payload: encodeOids([...suspects]) };
  },
  'peer.reconcile': async (sheep, h) => value(await sheep.recovery.reconcileState(argOid(h), argInt(h, 'epoch', 0, 2 ** 32))),
  'node.recovery': async (sheep) => value(await sheep.recoveryStates()),
  'recovery.throttle': async (sheep, h) =>
    value(await sheep.setThrottle(argInt(h, 'max', 1, throttleMaxObjectsLimit), argInt(h, 'interval', 1, throttleIntervalMsLimit))),
  'recovery.get-throttle': async (sheep) => value(sheep.group.throttle),
  'peer.write': async (sheep, h, p) => {
    markClientIo(sheep, h);
    const gateway = argOptionalString(h, 'from', 64);
    if (gateway !== undefined) sheep.recovery.noteWrite(gateway, argOid(h));
    return value(
      await sheep.gateway.localWrite(
        argOid(h),
        argInt(h, 'offset', 0, objectSizeBytesMax),
        argPayload(p, objectSizeBytesMax),
        argBool(h, 'create'),
        argInt(h, 'size', 1, objectSizeBytesMax),
      ),
    );
  },
  'peer.remove': async (sheep, h) => value(await sheep.store.remove(argOid(h))),
  'peer.exists': async (sheep, h) => value(await sheep.store.exists(argOid(h))),
  'peer.stat': async (sheep) => value(await sheep.localStat()),
  'peer.registry-durable': async (sheep, h) =>
    value(await sheep.group.registryDurable(argInt(h, 'version', 0, Number.MAX_SAFE_INTEGER), registryDurableWaitMs)),
};

export async function dispatch(sheep: Sheep, header: Header, payload: Buffer | undefined): Promise<Reply> {
  const name = header['op'];
  if (typeof name !== 'string' || !Object.hasOwn(ops, name)) {
    throw new SdError('PROTOCOL', `unknown operation ${String(name).slice(0, 40)}`);
  }
  return ops[name]!(sheep, header, payload);
}
