// dog: the admin CLI. Requests go to one sheep (-a/-p); output is formatted in ./format.ts.
import { Command, CommanderError, Option } from 'commander';
import { SdError } from '../engine/errors.js';
import {
  blockSizeShiftDefault,
  blockSizeShiftMax,
  blockSizeShiftMin,
  hyperObjectsMax,
  normalObjectsMax,
  throttleIntervalMsLimit,
  throttleMaxObjectsLimit,
} from '../engine/limits.js';
import { formatSize } from '../engine/size.js';
import { packageVersion } from '../engine/version.js';
import type { SheepClient } from '../rpc/sheep-client.js';
import { asVid, dataOid, inodeOid, oidHex } from '../engine/oid.js';
import { checkName, maxSizeBytes, objectCount } from '../engine/vdi.js';
import { VolumeIo } from '../volume/volume-io.js';
import {
  action,
  client,
  confirm,
  copiesArg,
  redundancyArg,
  DogFailure,
  exitSysfail,
  exitUsage,
  openFailure,
  openVolume,
  out,
  userSize,
  withGlobals,
  type Globals,
} from './common.js';
import { addAttrCommands } from './attr.js';
import { addBackupCommands } from './backup.js';
import { addClusterCopiesCommand, addVdiCopiesCommand } from './copies.js';
import { addClusterSnapshotCommands } from './cluster-snapshot.js';
import { completeArgumentWith } from './command-tree.js';
import { addCompletionCommand } from './completion.js';
import { buildCheck } from './check.js';
import { addInspectCommands, indexArg } from './inspect.js';
import { usageOutcome } from './usage.js';
import { snapshotArg } from './snapshot-arg.js';
import { recoverForcePrompt, rollbackPrompt } from './messages.js';
import { formatClusterInfo, formatNodeInfo, formatNodeList, formatRecovery, formatVdiList, formatVdiTree } from './format.js';
import { addLockCommands } from './lock.js';
import { hasOwnObjects } from './owners.js';
import { addVnodesCommand } from './vnodes.js';
import { addMdCommand } from './md.js';

const ioWindow = 16; // requests in flight for read/write

/** Byte positions as bigint: a hyper VDI reaches 2^54, past what a double counts exactly. */
function rangeArgs(volumeSize: number, asked: { offset: bigint; length: bigint | undefined }, what: 'Read' | 'Write'): { offset: bigint; length: bigint } {
  const size = BigInt(volumeSize);
  if (asked.offset > size) throw new DogFailure(`${what} offset is beyond the end of the VDI`);
  const rest = size - asked.offset;
  return { offset: asked.offset, length: asked.length === undefined || asked.length > rest ? rest : asked.length };
}

/** The object piece at `at`: its index, offset inside it and length up to `end`. */
function pieceAt(at: bigint, end: bigint, objectBytes: bigint): { index: number; inner: number; take: number } {
  const inner = at % objectBytes;
  const rest = objectBytes - inner;
  return { index: Number(at / objectBytes), inner: Number(inner), take: Number(end - at < rest ? end - at : rest) };
}

/** Object-aligned pieces so each request touches one object, many in flight, output in order. */
async function readRange(volume: VolumeIo, offset: bigint, length: bigint): Promise<void> {
  const objectBytes = BigInt(volume.info.objectSizeBytes);
  const pending: Array<Promise<Buffer>> = [];
  let at = offset;
  const end = offset + length;
  const next = () => {
    const { index, inner, take } = pieceAt(at, end, objectBytes);
    const piece = volume.readObject(index, inner, take);
    piece.catch(() => undefined);
    pending.push(piece);
    at += BigInt(take);
  };
  while (at < end && pending.length < ioWindow) next();
  while (pending.length > 0) {
    const data = await pending.shift()!;
    if (!process.stdout.write(data)) await new Promise((resolve) => process.stdout.once('drain', resolve));
    if (at < end) next();
  }
}

/** Collects stdin into object-aligned pieces (one copy each) and writes them, many in flight. */
async function writeRange(volume: VolumeIo, offset: bigint, length: bigint): Promise<void> {
  const objectBytes = BigInt(volume.info.objectSizeBytes);
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  let at = offset;
  const end = offset + length;
  let chunks: Buffer[] = [];
  let bufferedBytes = 0;
  const send = async (piece: Buffer) => {
    const { index, inner } = pieceAt(at, end, objectBytes);
    const write: Promise<void> = volume
      .writeObject(index, inner, piece)
      .catch((error: unknown) => void (failure ??= error))
      .finally(() => inflight.delete(write));
    inflight.add(write);
    at += BigInt(piece.length);
    if (inflight.size >= ioWindow) await Promise.race(inflight);
    if (failure !== undefined) throw failure;
  };
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    bufferedBytes += chunk.length;
    while (at < end && bufferedBytes >= pieceAt(at, end, objectBytes).take) {
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bufferedBytes);
      const take = pieceAt(at, end, objectBytes).take;
      await send(all.subarray(0, take));
      chunks = all.length > take ? [all.subarray(take)] : [];
      bufferedBytes = all.length - take;
    }
    if (at >= end) break;
  }
  if (at < end && bufferedBytes > 0) {
    const rest = Buffer.concat(chunks, bufferedBytes);
    await send(rest.subarray(0, Math.min(rest.length, pieceAt(at, end, objectBytes).take)));
  }
  await Promise.all(inflight);
  if (failure !== undefined) throw failure;
}

/** The original's usage failures: the reason, then the command's help (on stderr here). */
function usageFailure(reason: string, command: Command): DogFailure {
  return new DogFailure(`${reason}\n${command.helpInformation().trimEnd()}`, exitUsage);
}

/** The sheep refused (not: could not be reached or would not let us in). */
function refusedBySheep(error: unknown): error is SdError {
  return error instanceof SdError && error.code !== 'NETWORK' && error.code !== 'AUTH';
}

/** A command's failure from the sheep, worded as the original's `prefix: reason`. */
function failedAs(prefix: string, error: unknown): never {
  if (refusedBySheep(error)) throw new DogFailure(`${prefix}: ${error.message}`);
  throw error;
}

/** `-v`: a line (`verbose`) or, with -r, just the ids (`raw`). */
function verboseLine(o: Globals, verbose: string, raw: string): void {
  if (o.verbose) out(`${o.raw ? raw : verbose}\n`);
}

function buildVdi(program: Command): void {
  const vdi = program.command('vdi').description('manage virtual disk images');
  withGlobals(vdi.command('create').description('create an image').argument('<NAME>').argument('[SIZE]'))
    .option('-P, --prealloc', 'preallocate all the data objects')
    .option('-y, --hyper', 'create a hyper volume')
    .option('-c, --copies <COPIES>', 'specify the data redundancy level')
    .action(action(async (name: string, sizeText: string | undefined, o: Globals & { prealloc?: boolean; hyper?: boolean; copies?: string }, command: Command) => {
      if (sizeText === undefined) throw usageFailure('Please specify the VDI size', command);
      const redundancy = redundancyArg(o.copies);
      const asked = userSize(sizeText);
      try {
        checkName(name);
      } catch (error) {
        throw new DogFailure(`Failed to create VDI ${name.slice(0, 40)}: ${(error as SdError).message}`);
      }
      const sheep = client(o);
      const info = await sheep.clusterInfo();
      if (info.config === null) throw new DogFailure(`Failed to create VDI ${name}: Waiting for cluster to be formatted`);
      // The original's limits: 2^20 objects of the cluster's size, or a hyper volume of 2^32 4 MiB objects.
      const normalMax = BigInt(normalObjectsMax) << BigInt(info.config.blockSizeShift);
      const hyperMax = BigInt(hyperObjectsMax) << BigInt(blockSizeShiftDefault);
      if (asked > normalMax && o.hyper !== true) {
        throw new DogFailure(
          `VDI size is larger than ${formatSize(Number(normalMax))} bytes, please use '-y' to create a hyper volume with size up to ` +
            `${formatSize(Number(hyperMax))} bytes or use '-z' to create larger object size volume`,
          exitUsage,
        );
      }
      if (asked > hyperMax) throw new DogFailure('VDI size is too large', exitUsage);
      const size = Number(asked);
      let entry;
      try {
        entry = await sheep.vdiCreate(name, size, redundancy?.copies, o.hyper === true, redundancy?.copyPolicy);
      } catch (error) {
        failedAs(`Failed to create VDI ${name}`, error);
      }
      if (o.prealloc) {
        const volume = new VolumeIo(sheep, entry);
        const zeros = Buffer.alloc(volume.info.objectSizeBytes);
        for (let at = 0; at < size; at += zeros.length) {
          await volume.write(at, zeros.subarray(0, Math.min(zeros.length, size - at)));
          if (process.stderr.isTTY) process.stderr.write(`\rpreallocating ${Math.floor(((at + zeros.length) * 100) / size)}%`);
        }
        if (process.stderr.isTTY) process.stderr.write('\n');
      }
      verboseLine(o, `VDI ID of newly created VDI: ${entry.vid.toString(16)}`, entry.vid.toString(16));
    }));
  withGlobals(vdi.command('list').description('list images').argument('[NAME]'))
    .action(action(async (name: string | undefined, o: Globals) => {
      const sheep = client(o);
      const rows = await sheep.vdiList().catch(async (error: unknown) => {
        if (!(error instanceof SdError) || error.code !== 'WAIT_FOR_JOIN') throw error;
        // The original listed the VDIs, then failed to read each inode: the header, a refusal
        // per VDI, and exit 0.
        out(formatVdiList([], o.raw === true));
        const live = (await sheep.vdiAll()).filter((e) => !e.deleted).sort((a, b) => a.vid - b.vid);
        for (const entry of live) {
          process.stderr.write(`Failed to read object ${oidHex(inodeOid(asVid(entry.vid)))} ${error.message}\nFailed to read inode header\n`);
        }
        return undefined;
      });
      if (rows === undefined) return;
      out(formatVdiList(name === undefined ? rows : rows.filter((r) => r.entry.name === name), o.raw === true));
    }));
  withGlobals(vdi.command('tree').description('show images in tree view format'))
    .action(action(async (o: Globals) => out(formatVdiTree(await client(o).vdiAll()))));
  withGlobals(vdi.command('snapshot').description('create a snapshot').argument('<NAME>'))
    .option('-s, --snapshot <TAG>', 'specify a snapshot id or tag name')
    .option('-R, --reduce-identical-snapshots', "do not create snapshot if working VDI doesn't have its own objects")
    .action(action(async (name: string, o: Globals & { snapshot?: string; reduceIdenticalSnapshots?: boolean }, command: Command) => {
      const ref = snapshotArg(o.snapshot);
      if (ref !== undefined && 'snapId' in ref) throw usageFailure('Please specify a non-integer value for a snapshot tag name', command);
      const sheep = client(o);
      if (o.reduceIdenticalSnapshots && !(await hasOwnObjects(await openVolume(sheep, name, undefined)))) return;
      let snapshot;
      try {
        snapshot = await sheep.vdiSnapshot(name, o.snapshot ?? '');
      } catch (error) {
        if (error instanceof SdError && error.code === 'SNAPSHOT_EXISTS') {
          throw new DogFailure(`Failed to create snapshot for ${name}, maybe snapshot id (0) or tag (${o.snapshot ?? ''}) is existed`);
        }
        failedAs(`Failed to create snapshot for ${name}`, error);
      }
      if (o.verbose) {
        const working = (await sheep.lookup(name, undefined)).vid.toString(16);
        const frozen = snapshot.vid.toString(16);
        verboseLine(o, `new VID of original VDI: ${working}, VDI ID of newly created snapshot: ${frozen}`, `${working} ${frozen}`);
      }
    }));
  withGlobals(vdi.command('clone').description('clone an image').argument('<SRC>').argument('[DST]'))
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .option('-c, --copies <COPIES>', 'specify the data redundancy level')
    .action(action(async (source: string, target: string | undefined, o: Globals & { snapshot?: string; copies?: string }, command: Command) => {
      if (target === undefined) throw usageFailure('Destination VDI name must be specified', command);
      if (o.snapshot === undefined) throw usageFailure("Only snapshot VDIs can be cloned\nPlease specify the '-s' option", command);
      const ref = snapshotArg(o.snapshot);
      let clone;
      try {
        clone = await client(o).vdiClone(source, ref, target, copiesArg(o.copies));
      } catch (error) {
        if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(source, ref, error);
        failedAs(`Failed to create VDI ${target}`, error);
      }
      verboseLine(o, `VDI ID of newly created clone: ${clone.vid.toString(16)}`, clone.vid.toString(16));
    }));
  withGlobals(vdi.command('delete').description('delete an image').argument('<NAME>'))
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .action(action(async (name: string, o: Globals & { snapshot?: string }) => {
      const ref = snapshotArg(o.snapshot);
      try {
        await client(o).vdiDelete(name, ref);
      } catch (error) {
        if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(name, ref, error);
        failedAs(`Failed to delete ${name}`, error);
      }
    }));
  withGlobals(vdi.command('rollback').description('rollback to a snapshot').argument('<NAME>'))
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .option('-f, --force', 'do operation forcibly')
    .addOption(new Option('-y, --yes', 'the old name of -f').hideHelp())
    .action(action(async (name: string, o: Globals & { snapshot?: string; force?: boolean; yes?: boolean }, command: Command) => {
      if (o.snapshot === undefined) throw usageFailure("Please specify the '-s' option", command);
      const ref = snapshotArg(o.snapshot);
      const sheep = client(o);
      try {
        await sheep.lookup(name, ref);
      } catch (error) {
        if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(name, ref, error);
        throw error;
      }
      if (!o.force && !o.yes) await confirm(rollbackPrompt);
      const working = await sheep.vdiRollback(name, ref).catch((error: unknown) => failedAs(`Failed to create VDI ${name}`, error));
      verboseLine(o, `New VDI ID of rollbacked VDI: ${working.vid.toString(16)}`, working.vid.toString(16));
    }));
  withGlobals(vdi.command('resize').description('resize an image').argument('<NAME>').argument('[SIZE]'))
    .action(action(async (name: string, sizeText: string | undefined, o: Globals, command: Command) => {
      if (sizeText === undefined) throw usageFailure('Please specify the new size for the VDI', command);
      const asked = userSize(sizeText);
      const sheep = client(o);
      const entry = await sheep.lookup(name, undefined).catch((error: unknown) => {
        if (error instanceof SdError && error.code === 'NO_VDI') throw openFailure(name, undefined, error);
        throw error;
      });
      const max = BigInt(maxSizeBytes(entry.hyper, entry.blockSizeShift));
      if (asked > max) {
        throw new DogFailure(entry.hyper ? `New VDI size is too large This volume's max size is ${max}` : `New VDI size is too large. This volume's max size is ${max}`, exitUsage);
      }
      if (asked < BigInt(entry.sizeBytes)) throw new DogFailure('Shrinking VDIs is not implemented', exitUsage);
      await sheep.vdiResize(name, Number(asked)).catch((error: unknown) => failedAs('Failed to update an inode header', error));
    }));
  withGlobals(vdi.command('read').description('read data from an image').argument('<NAME>').argument('[OFFSET]').argument('[LEN]'))
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .action(action(async (name: string, offsetText: string | undefined, lengthText: string | undefined, o: Globals & { snapshot?: string }) => {
      const range = { offset: offsetText === undefined ? 0n : userSize(offsetText), length: lengthText === undefined ? undefined : userSize(lengthText) };
      const volume = await openVolume(client(o), name, snapshotArg(o.snapshot));
      const { offset, length } = rangeArgs(volume.info.sizeBytes, range, 'Read');
      await readRange(volume, offset, length);
    }));
  withGlobals(vdi.command('write').description('write data to an image').argument('<NAME>').argument('[OFFSET]').argument('[LEN]'))
    .action(action(async (name: string, offsetText: string | undefined, lengthText: string | undefined, o: Globals) => {
      const range = { offset: offsetText === undefined ? 0n : userSize(offsetText), length: lengthText === undefined ? undefined : userSize(lengthText) };
      const volume = await openVolume(client(o), name, undefined);
      const { offset, length } = rangeArgs(volume.info.sizeBytes, range, 'Write');
      await writeRange(volume, offset, length);
    }));
  const object = vdi.command('object').description('show object information in the image');
  withGlobals(object.command('location').description('show object location information').argument('<NAME>').argument('[IDX]'))
    .option('-i, --index <IDX>', 'specify the index of data objects')
    .option('-s, --snapshot <SNAP>', 'specify a snapshot id or tag name')
    .action(action(async (name: string, indexText: string | undefined, o: Globals & { index?: string; snapshot?: string }) => {
      const sheep = client(o);
      const text = o.index ?? indexText;
      const index = text === undefined ? undefined : indexArg(text);
      const volume = await openVolume(sheep, name, snapshotArg(o.snapshot)).catch((error: unknown) => {
        if (error instanceof DogFailure) throw new DogFailure(`${error.message}\nFATAL: no inode objects`);
        throw error;
      });
      out(await locationReport(sheep, volume, index));
    }));
  addAttrCommands(vdi);
  addBackupCommands(vdi);
  addLockCommands(vdi);
  addVdiCopiesCommand(vdi);
}

/** `vdi object location`: which nodes hold the object, and where placement says it belongs. */
async function locationReport(sheep: SheepClient, volume: VolumeIo, index: number | undefined): Promise<string> {
  const vid = asVid(volume.info.vid);
  const nodes = await sheep.nodeList();
  let oid;
  let report;
  if (index === undefined) {
    oid = inodeOid(vid);
    report = `Looking for the inode object 0x${vid.toString(16)} with ${nodes.length} nodes\n\n`;
  } else {
    if (index >= hyperObjectsMax) throw new DogFailure('The offset is too large!');
    const owner = index < objectCount(volume.entry) ? await volume.owner(index) : 0;
    if (owner === 0) return `The inode object 0x${vid.toString(16)} idx ${index} is not allocated\n`;
    oid = dataOid(asVid(owner), index);
    report = `Looking for the object ${oidHex(oid)} (vid 0x${vid.toString(16)} idx ${index}, ${volume.entry.copies} copies) with ${nodes.length} nodes\n\n`;
  }
  const where = await sheep.location(oid);
  for (const node of nodes) report += where.holders.includes(node.id) ? `${node.id} has the object\n` : `${node.id} doesn't have the object\n`;
  if (nodes.length < volume.entry.copies) {
    return `${report}\nBecause number of nodes (${nodes.length}) is less than number of copies (${volume.entry.copies}), the object should be located at every nodes.\n`;
  }
  return `${report}\nAccording to sheepdog algorithm, the object should be located at:\n${where.placement.join(' ')}\n`;
}

const formatPrompt = "    __\n   ()'`;\n   /\\|`\n  /  |   Caution! The cluster is not empty.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ";

/** `cluster format -z`: the original's messages below 20 and above 31; this store's objects end at 2^26. */
function blockSizeShiftArg(text: string): number {
  const shift = /^\d+$/.test(text) ? Number(text) : 0;
  if (shift > 31) throw new DogFailure('Object Size is limited to 2^31. Please set shift bit lower than 31');
  if (shift < blockSizeShiftMin) throw new DogFailure('Object Size is larger than 2^20. Please set shift bit larger than 20');
  if (shift > blockSizeShiftMax) throw new DogFailure(`Object Size is limited to 2^${blockSizeShiftMax} here. Please set shift bit lower than ${blockSizeShiftMax + 1}`);
  return shift;
}

function buildCluster(program: Command): void {
  const cluster = program.command('cluster').description('manage the cluster');
  withGlobals(cluster.command('info').description('show cluster information'))
    .action(action(async (o: Globals) => out(formatClusterInfo(await client(o).clusterInfo(), o.raw === true, o.verbose === true))));
  withGlobals(cluster.command('format').description('create a Sheepdog store'))
    .option('-c, --copies <COPIES>', 'specify the default data redundancy (number of copies)', '3')
    .option('-z, --block-size-shift <SHIFT>', 'specify the shift num of default data object size (20-26)', '22')
    .option('-b, --backend <STORE>', 'specify backend store (plain)', 'plain')
    .option('-f, --force', 'do not prompt for confirmation')
    .option('-R, --recyclevid', 'enable recycling of VID')
    .option('-V, --fixedvnodes', 'disable automatic vnodes calculation')
    .option('-t, --strict', 'do not serve write request if number of nodes is not sufficient')
    .action(action(async (o: Globals & { copies: string; blockSizeShift: string; backend: string; force?: boolean; fixedvnodes?: boolean; recyclevid?: boolean; strict?: boolean }) => {
      const { copies, copyPolicy } = redundancyArg(o.copies)!;
      const shift = blockSizeShiftArg(o.blockSizeShift);
      const sheep = client(o);
      try {
        // Reached and let in before the original's first line.
        await sheep.ping();
        // The key travels to no sheep: one that holds none would make a new one, not FILE's.
        if (o.keyFile !== undefined && sheep.rpc.unkeyed) {
          throw new DogFailure(`Format failed: the sheep holds no cluster key, so format would make a new one, not the one in ${o.keyFile}: start every sheep with -k ${o.keyFile}, or format without -k`);
        }
        // A formatted cluster is formatted anew, its data gone: asked first if it holds VDIs.
        const reformat = (await sheep.clusterInfo()).config !== null;
        if (reformat && !o.force && (await sheep.vdiAll()).some((e) => !e.deleted)) await confirm(formatPrompt);
        out(`using backend ${o.backend} store\n`);
        if (o.backend !== 'plain') {
          out('Available stores:\n---------------------------------------\nplain\n');
          throw new DogFailure('Format failed: Targeted backend store is not found', exitSysfail);
        }
        await sheep.format(copies, shift, reformat, {
          fixedVnodes: o.fixedvnodes === true,
          recycleVids: o.recyclevid === true,
          ...(copyPolicy ? { copyPolicy } : {}),
          strict: o.strict === true,
        });
      } catch (error) {
        if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`Format failed: ${error.message}`);
        throw error;
      }
    }));
  withGlobals(cluster.command('shutdown').description('stop Sheepdog'))
    .action(action(async (o: Globals) => {
      await client(o).shutdown().catch((error: unknown) => {
        if (refusedBySheep(error)) throw new DogFailure(`Response's result: ${error.message}\nfailed to execute request`);
        throw error;
      });
    }));
  withGlobals(completeArgumentWith(cluster.command('recover'), ['force', 'enable', 'disable']).description('force recover cluster immediately (force), enable or disable automatic recovery').argument('<ACTION>', 'force, enable or disable'))
    .option('-f, --force', 'do not prompt for confirmation')
    .addOption(new Option('-y, --yes', 'the old name of -f').hideHelp())
    .action(action(async (verb: string, o: Globals & { force?: boolean; yes?: boolean }) => {
      if (verb !== 'force' && verb !== 'enable' && verb !== 'disable') throw new DogFailure(`Unknown recover action '${verb}': use force, enable or disable`, exitUsage);
      if (verb === 'force' && !o.force && !o.yes) await confirm(recoverForcePrompt);
      try {
        await client(o).recover(verb);
      } catch (error) {
        // The original's words: force's own, enable's and disable's from send_light_req.
        if (refusedBySheep(error)) throw new DogFailure(verb === 'force' ? `failed to execute request, ${error.message}` : `Response's result: ${error.message}`);
        throw error;
      }
      if (verb === 'enable') out('Cluster recovery: enable\n');
      if (verb === 'disable') out('Cluster recovery: disable\n');
    }));
  addClusterCopiesCommand(cluster);
  addClusterSnapshotCommands(cluster);
}

/** `node recovery set-throttle`: the original's ranges, bounded by what a timer can wait. */
function throttleArgs(maxText: string | undefined, intervalText: string | undefined): { max: number; interval: number } {
  if (maxText === undefined || intervalText === undefined) {
    throw new DogFailure(`Invalid interval max (${maxText ?? '(null)'}), interval (${intervalText ?? '(null)'})`, exitUsage);
  }
  if (!/^\d+$/.test(maxText) || Number(maxText) > throttleMaxObjectsLimit) throw new DogFailure(`Invalid max (${maxText})`, exitUsage);
  if (!/^\d+$/.test(intervalText) || Number(intervalText) > throttleIntervalMsLimit) throw new DogFailure(`Invalid interval (${intervalText})`, exitUsage);
  const max = Number(maxText);
  const interval = Number(intervalText);
  if ((max === 0) !== (interval === 0)) throw new DogFailure(`Invalid interval max (${max}), interval (${interval})`, exitUsage);
  return { max, interval };
}

function buildNode(program: Command): void {
  const node = program.command('node').description('inspect and manage nodes');
  withGlobals(node.command('list').description('list nodes'))
    .action(action(async (o: Globals) => out(formatNodeList(await client(o).nodeList(), o.raw === true))));
  withGlobals(node.command('info').description('show information about each node'))
    .action(action(async (o: Globals) => {
      const info = await client(o).nodeInfo();
      if (info.nodes.length === 0) throw new DogFailure('Cannot get information from any nodes', exitSysfail);
      out(formatNodeInfo(info.nodes, info.virtualBytes, o.raw === true));
    }));
  withGlobals(
    completeArgumentWith(node.command('recovery'), ['info', 'set-throttle', 'get-throttle'])
      .description('show recovery information or set/get recovery speed throttling of nodes')
      .argument('[ACTION]', 'info (default), set-throttle or get-throttle')
      .argument('[MAX]', 'objects recovered per interval (0-4294967295; 0 0: no throttle)')
      .argument('[INTERVAL]', `interval in milliseconds (0-${throttleIntervalMsLimit})`),
  ).action(action(async (verb: string | undefined, maxText: string | undefined, intervalText: string | undefined, o: Globals) => {
    const sheep = client(o);
    if (verb === undefined || verb === 'info') {
      out(formatRecovery(await sheep.recoveryStates(), o.raw === true));
      return;
    }
    if (verb === 'get-throttle') {
      const throttle = await sheep.getThrottle().catch((error: unknown) => failedAs('Failed to execute request', error));
      out(`max (${throttle.maxObjects}), interval (${throttle.intervalMs})\n`);
      return;
    }
    if (verb !== 'set-throttle') throw new DogFailure(`Unknown recovery action '${verb}': use info, set-throttle or get-throttle`, exitUsage);
    const { max, interval } = throttleArgs(maxText, intervalText);
    await sheep.setThrottle(max, interval).catch((error: unknown) => failedAs('Failed to execute request', error));
  }));
  addMdCommand(node);
  addVnodesCommand(node);
  withGlobals(node.command('kill').description('kill node').argument('[ID]', 'node id (its index in node list)'))
    .option('-l, --local', 'issue request to local node')
    .action(action(async (idText: string | undefined, o: Globals & { local?: boolean }) => {
      if (o.local && idText !== undefined) throw new DogFailure("don't use -l option and specify node id at the same time", exitUsage);
      if (!o.local && idText === undefined) throw new DogFailure('please specify -l option or node id', exitUsage);
      const sheep = client(o);
      const nodes = await sheep.nodeList();
      let target;
      if (idText === undefined) {
        // -l: the node dog talks to, by its port (and address, when more than one node has it).
        const onPort = nodes.filter((n) => n.port === Number(o.port));
        target = onPort.length === 1 ? onPort[0] : onPort.find((n) => n.addr === o.address);
      } else {
        if (!/^\d+$/.test(idText)) throw new DogFailure(`Invalid node id '${idText}', please specify a numeric value`, exitUsage);
        target = nodes[Number(idText)];
        if (!target) throw new DogFailure(`Invalid node id '${Number(idText)}'`, exitUsage);
      }
      if (!target) throw new DogFailure('Failed to execute request');
      await sheep.killNode(target.id).catch((error: unknown) => failedAs('Failed to execute request', error));
    }));
}

/** dog's whole command table: what main parses, and what completion and man pages are made from. */
export function dogProgram(): Command {
  const program = new Command('dog')
    .description(`Sheepdog administrator utility (version ${packageVersion})`)
    .version(`Sheepdog administrator utility (version ${packageVersion})`, '--version', 'show the version')
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({ writeErr: (text) => process.stderr.write(text.replace(/^error: /, '')) });
  buildCluster(program);
  buildNode(program);
  buildVdi(program);
  buildCheck<Globals>(program, { withGlobals, client, action, openVolume, failure: (message, code) => new DogFailure(message, code) });
  addInspectCommands(program);
  addCompletionCommand(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = dogProgram();
  const usage = usageOutcome(program, argv);
  if (usage !== undefined) {
    process.stderr.write(usage.stderr);
    process.stdout.write(usage.stdout, () => process.exit(usage.code));
    return;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : error.code === 'commander.help' ? 0 : exitUsage);
    throw error;
  }
  if (argv.length === 0) {
    program.outputHelp();
    process.exit(exitUsage);
  }
}

