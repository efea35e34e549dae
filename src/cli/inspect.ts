// dog's inspection commands: node stat and log level, vdi graph, track and object map/dump-inode,
// cluster reweight. Options, output and messages follow the original (3ebe5ea dog/node.c,
// dog/vdi.c, dog/cluster.c); the text is made in ./inspect-format.ts.
import type { Command } from 'commander';
import { SdError } from '../engine/errors.js';
import { hyperObjectsMax } from '../engine/limits.js';
import { asVid, dataOid, inodeOid, oidHex, parseOid, type Oid } from '../engine/oid.js';
import { objectCount } from '../engine/vdi.js';
import { logLevelNames } from '../sheep/log-level.js';
import type { RequestStatsData } from '../sheep/stats.js';
import type { SheepClient } from '../rpc/sheep-client.js';
import type { VolumeIo } from '../volume/volume-io.js';
import { completeArgumentWith } from './command-tree.js';
import { action, client, DogFailure, openVolume, out, withGlobals, type Globals } from './common.js';
import {
  formatDumpInode,
  formatLogLevels,
  formatNodeStat,
  formatNodeStatWatch,
  formatObjectMap,
  formatTrack,
  formatVdiGraph,
} from './inspect-format.js';
import { snapshotArg } from './snapshot-arg.js';

/** `node stat -w` asks once a second, as the original. */
const statWatchIntervalMs = 1000;

function subcommand(parent: Command, name: string): Command {
  const found = parent.commands.find((c) => c.name() === name);
  if (!found) throw new Error(`dog has no '${name}' command to add to`);
  return found;
}

/** `-i IDX`: decimal, or hexadecimal after 0x (the original's vdi_parser). */
export function indexArg(text: string): number {
  const hex = text.startsWith('0x');
  const digits = hex ? text.slice(2) : text;
  if (!(hex ? /^[0-9a-f]+$/i : /^\d+$/).test(digits)) {
    throw new DogFailure('The index must be a decimal integer or a hexadecimal integer started with 0x');
  }
  return Number.parseInt(digits, hex ? 16 : 10);
}

/** Owners of the allocated indexes of a VDI (or of `only`), in index order. */
async function owners(volume: VolumeIo, only?: number): Promise<Array<{ index: number; vid: number }>> {
  if (only !== undefined) return [{ index: only, vid: only < objectCount(volume.entry) ? await volume.owner(only) : 0 }];
  const found: Array<{ index: number; vid: number }> = [];
  const count = objectCount(volume.entry);
  for (let index = 0; index < count; index++) {
    const vid = await volume.owner(index);
    if (vid !== 0) found.push({ index, vid });
  }
  return found;
}

function addNodeCommands(node: Command): void {
  withGlobals(node.command('stat').description('show stat information about the node'))
    .option('-w, --watch', 'watch the stat every second')
    .action(action(async (o: Globals & { watch?: boolean }) => {
      const sheep = client(o);
      const stat = async () => {
        try {
          return await sheep.rpc.call('node.stat', {});
        } catch (error) {
          if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`failed to get stat information: ${error.message}`);
          throw error;
        }
      };
      if (!o.watch) {
        out(formatNodeStat(await stat(), o.raw === true));
        return;
      }
      let last: RequestStatsData | undefined;
      for (;;) {
        const now = await stat();
        out(formatNodeStatWatch(now, last ?? now, o.raw === true));
        last = now;
        await new Promise((resolve) => setTimeout(resolve, statWatchIntervalMs));
      }
    }));
  const log = node.command('log').description('show or set log level of the node');
  const level = log.command('level').description('manipulate loglevel');
  withGlobals(completeArgumentWith(level.command('set'), logLevelNames).description('set new loglevel').argument('<LEVEL>', `one of ${logLevelNames.join(', ')}`))
    .action(action(async (text: string, o: Globals) => {
      const number = (logLevelNames as readonly string[]).indexOf(text);
      if (number < 0) throw new DogFailure(`invalid loglevel: ${text}\navailable loglevels:\n${formatLogLevels().trimEnd()}`);
      await logLevelCall(client(o), number);
    }));
  withGlobals(level.command('get').description('get current loglevel'))
    .action(action(async (o: Globals) => {
      const number = await logLevelCall(client(o), undefined);
      out(`${logLevelNames[number] ?? 'unknown loglevel'} (${number})\n`);
    }));
  withGlobals(level.command('list').description('list available loglevels'))
    .action(action(async () => out(formatLogLevels())));
}

async function logLevelCall(sheep: SheepClient, level: number | undefined): Promise<number> {
  try {
    return await sheep.rpc.call('node.log-level', { level });
  } catch (error) {
    if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure('Failed to execute request');
    throw error;
  }
}

interface ObjectOptions extends Globals {
  index?: string;
  snapshot?: string;
  oid?: string;
}

function addVdiCommands(vdi: Command): void {
  withGlobals(vdi.command('graph').description('show images in Graphviz dot format'))
    .action(action(async (o: Globals) => out(formatVdiGraph(await client(o).vdiAll(), (sec) => new Date(sec * 1000)))));
  withGlobals(vdi.command('track').description('show the object epoch trace in the image').argument('<NAME>'))
    .option('-i, --index <IDX>', 'specify the index of data objects')
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .option('-o, --oid <OID>', 'specify the object id of the tracking object')
    .action(action(async (name: string, o: ObjectOptions) => {
      const sheep = client(o);
      const ref = snapshotArg(o.snapshot);
      const oid = o.oid === undefined ? undefined : oidArg(o.oid);
      const index = o.index === undefined ? undefined : indexArg(o.index);
      const volume = await openVolume(sheep, name, ref).catch((error: unknown) => fatal(error, 'FATAL: no inode objects'));
      const { vid, copies } = volume.entry;
      const info = await sheep.clusterInfo();
      const nodes = info.epochs[0]?.nodes.length ?? 0;
      let target: Oid;
      if (oid !== undefined) {
        target = oid;
        out(`Tracking the object ${oidHex(oid)} (the inode vid 0x${vid.toString(16)}) with ${nodes} nodes\n`);
      } else if (index === undefined) {
        target = inodeOid(asVid(vid));
        out(`Tracking the inode object 0x${vid.toString(16)} with ${nodes} nodes\n`);
      } else {
        if (index >= hyperObjectsMax) throw new DogFailure('The offset is too large!');
        const owner = index < objectCount(volume.entry) ? await volume.owner(index) : 0;
        // An unallocated index has owner 0: the original tracked that object id all the same.
        target = owner === 0 ? (BigInt(index) as Oid) : dataOid(asVid(owner), index);
        out(`Tracking the object ${oidHex(target)} (the inode vid 0x${vid.toString(16)} idx ${index}) with ${nodes} nodes\n`);
      }
      out(formatTrack(target, copies, info.epochs));
    }));
  const object = subcommand(vdi, 'object');
  withGlobals(object.command('map').description('show object map information').argument('<NAME>'))
    .option('-i, --index <IDX>', 'specify the index of data objects')
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .action(action(async (name: string, o: ObjectOptions) => {
      const ref = snapshotArg(o.snapshot);
      const index = o.index === undefined ? undefined : indexArg(o.index);
      const volume = await openVolume(client(o), name, ref).catch((error: unknown) => fatal(error, `FATAL: ${name} not found`));
      out(formatObjectMap(await owners(volume, index)));
    }));
  withGlobals(object.command('dump-inode').description('dump inode information').argument('<NAME>'))
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .action(action(async (name: string, o: ObjectOptions) => {
      const volume = await openVolume(client(o), name, snapshotArg(o.snapshot));
      out(formatDumpInode(volume.entry, await owners(volume)));
    }));
}

/** The original's second line after a failed open (read_vdi_obj's own line comes first). */
function fatal(error: unknown, line: string): never {
  if (error instanceof DogFailure) throw new DogFailure(`${error.message}\n${line}`, error.exitCode);
  throw error;
}

function oidArg(text: string): Oid {
  const oid = /^(0x)?[0-9a-f]{1,16}$/i.test(text) ? parseOid(BigInt(`0x${text.replace(/^0x/i, '')}`)) : undefined;
  if (oid === undefined || oid === 0n) throw new DogFailure('object id must be a hex integer');
  return oid;
}

function addClusterCommands(cluster: Command): void {
  withGlobals(cluster.command('reweight').description('reweight the cluster'))
    .action(action(async (o: Globals) => {
      try {
        await client(o).rpc.call('cluster.reweight', {});
      } catch (error) {
        if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`Response's result: ${error.message}`);
        throw error;
      }
    }));
}

/** Adds the inspection commands to dog's cluster, node and vdi commands. */
export function addInspectCommands(program: Command): void {
  addClusterCommands(subcommand(program, 'cluster'));
  addNodeCommands(subcommand(program, 'node'));
  addVdiCommands(subcommand(program, 'vdi'));
}
