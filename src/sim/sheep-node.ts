// The real Sheep as the simulator's SimSheep: built from the simulated world, driven through its
// own services (the same ones the rpc handlers call), inspected through its own state.
import * as path from 'node:path';
import { oidHex, type Oid } from '../engine/oid.js';
import { Sheep } from '../sheep/sheep.js';
import { dataOffset } from '../store/block-sums.js';
import type { SheepFactory, SimNodeState, SimSheep } from './node.js';

export const realSheep: SheepFactory = (world, config): SimSheep => simSheepOf(new Sheep(world, { ...config, nbd: null }));

/** A running Sheep seen as a SimSheep (the scenario harness builds its own Sheep and uses this too). */
export function simSheepOf(sheep: Sheep): SimSheep {
  const volumes = sheep.volumeProvider();
  return {
    start: () => sheep.start(),
    leave: () => sheep.stop(0),
    format: async (copies, blockSizeShift) => void (await sheep.admin.format(copies, blockSizeShift)),
    createVdi: async (name, sizeBytes) => void (await sheep.vdi.create({ name, sizeBytes, copies: undefined, hyper: false })),
    snapshot: async (name, tag) => void (await sheep.vdi.snapshot(name, tag)),
    clone: async (source, tag, target) => void (await sheep.vdi.clone(source, { tag }, target, undefined)),
    rollback: async (name, tag) => void (await sheep.vdi.rollback(name, { tag })),
    deleteVdi: (name, tag) => sheep.vdi.remove(name, tag === undefined ? undefined : { tag }),
    open: (spec) => volumes.open(spec),
    scrub: () => sheep.integrity.scrub.passNow(),
    state: (): SimNodeState => {
      const { group, recovery } = sheep;
      const finished = group.members.every((member) => group.recoveredBy.has(member.id));
      // The epoch history and the registry are made when first read (the convergence wait asks
      // after every event, and mostly needs only status and recovering): read them at once.
      let epochs: SimNodeState['epochs'] | undefined;
      let registry: SimNodeState['registry'] | undefined;
      return {
        status: group.status,
        get epochs() {
          return (epochs ??= group.epochs.map((record) => ({ epoch: record.epoch, nodes: record.nodes.map((node) => node.id) })));
        },
        members: group.members.map((member) => member.id),
        recovering: recovery.state.running || recovery.state.epoch !== group.epoch || !finished,
        get registry() {
          return (registry ??= group.registry.all());
        },
      };
    },
    epoch: () => sheep.group.epoch,
    objects: () => sheep.store.list(),
    // The object store's layout (ObjectStore.objectPath, block-sums.ts): the checker fails if it changes.
    objectFile: (oid: Oid) => ({
      path: path.join(sheep.config.storeDir, 'obj', oidHex(oid)),
      sizeBytes: dataOffset + sheep.placement.objectSizeBytes(oid),
      contentBytes: sheep.placement.contentBytes(oid),
    }),
    placement: (oid) => sheep.placement.nodes(oid).map((node) => node.id),
  };
}
