// dog: the admin CLI. Requests go to one sheep (-a/-p); output is formatted in ./format.ts.
import { Command, CommanderError, Option } from 'commander';
import * as readline from 'node:readline';
import { SdError } from '../engine/errors.js';
import { copiesMax, portDefault } from '../engine/limits.js';
import { asVid, dataOid, inodeOid, oidHex } from '../engine/oid.js';
import { parseSize, parseSizeBigint } from '../engine/size.js';
import { checkName, parseSnapshotRef, snapshotRefText, type SnapshotRef } from '../engine/vdi.js';
import { VolumeIo } from '../volume/volume-io.js';
import { SheepClient, sheepClientWorld } from '../rpc/sheep-client.js';
import { buildCheck } from './check.js';
import { formatClusterInfo, formatNodeInfo, formatNodeList, formatRecovery, formatVdiList, formatVdiTree } from './format.js';

const exitFailure = 1;
const exitUsage = 64;
const ioWindow = 16; // requests in flight for read/write

/** A failure already worded for the user. */
class DogFailure extends Error {
  constructor(message: string, readonly exitCode = exitFailure) {
    super(message);
  }
}

interface Globals {
  address: string;
  port: string;
  raw?: boolean;
  keyFile?: string;
}

function withGlobals(command: Command): Command {
  return command
    .option('-a, --address <ADDR>', 'sheep address', '127.0.0.1')
    .option('-p, --port <PORT>', 'sheep port', String(portDefault))
    .option('-r, --raw', 'raw output, one line per row')
    .option('-k, --key-file <FILE>', 'cluster key file (default: the sheep\'s STORE/cluster.key on this host, else /etc/sheepdog/cluster.key)');
}

function client(globals: Globals): SheepClient {
  const port = Number(globals.port);
  if (!/^\d+$/.test(globals.port) || port < 1 || port > 65535) throw new DogFailure(`Invalid port number '${globals.port}'`);
  return new SheepClient(globals.address, port, sheepClientWorld(globals.keyFile));
}

function openFailure(name: string, ref: SnapshotRef, error: SdError): DogFailure {
  const { id, tag } = snapshotRefText(ref);
  return new DogFailure(`Failed to open VDI ${name} (snapshot id: ${id} snapshot tag: ${tag}): ${error.message}`);
}

/** A size typed by the user: its parse error becomes dog's one-line failure. */
function sizeArg<T extends number | bigint>(text: string, what: string, parse: (text: string, what: string) => T): T {
  try {
    return parse(text, what);
  } catch (error) {
    throw new DogFailure((error as SdError).message);
  }
}

function copiesArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > copiesMax) {
    throw new DogFailure(`Invalid copies number, must be an integer between 1 and ${copiesMax}: '${text}'`);
  }
  return Number(text);
}

function out(text: string): void {
  process.stdout.write(text);
}

async function confirm(question: string): Promise<boolean> {
  process.stdout.write(question);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    lines.close();
    return line.trim() === 'yes' || line.trim() === 'y';
  }
  return false;
}

/** Exits once stdout has drained: with a pipe, process.exit() would cut the output short. */
function exitWhenFlushed(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

/** Runs a command body, turning failures into one line and an exit code. */
function action<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (error) {
      if (error instanceof DogFailure) {
        if (error.message !== '') process.stderr.write(`${error.message}\n`); // '': already said
        exitWhenFlushed(error.exitCode);
        return;
      }
      if (error instanceof SdError) {
        process.stderr.write(`${error.code === 'NETWORK' ? 'Failed to connect to sheep: ' : ''}${error.message}\n`);
        exitWhenFlushed(exitFailure);
        return;
      }
      throw error;
    }
    exitWhenFlushed(0);
  };
}

async function openVolume(sheep: SheepClient, name: string, ref: SnapshotRef): Promise<VolumeIo> {
  try {
    const entry = await sheep.lookup(name, ref);
    await sheep.enableDirectIo();
    return new VolumeIo(sheep, entry);
  } catch (error) {
    if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(name, ref, error);
    throw error;
  }
}

/** Byte positions as bigint: a hyper VDI reaches 2^54, past what a double counts exactly. */
function rangeArgs(volumeSize: number, offsetText: string | undefined, lengthText: string | undefined): { offset: bigint; length: bigint } {
  const size = BigInt(volumeSize);
  const parse = (text: string, what: string) => sizeArg(text, what, parseSizeBigint);
  const offset = offsetText === undefined ? 0n : parse(offsetText, 'offset');
  if (offset > size || (offset === size && offset !== 0n)) {
    throw new DogFailure(`Invalid offset ${offset}: beyond the end of the VDI (${volumeSize} bytes)`);
  }
  const length = lengthText === undefined ? size - offset : parse(lengthText, 'length');
  return { offset, length: length < size - offset ? length : size - offset };
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

function buildVdi(program: Command): void {
  const vdi = program.command('vdi').description('manage virtual disk images');
  withGlobals(vdi.command('create').description('create a VDI').argument('<NAME>').argument('<SIZE>'))
    .option('-P, --prealloc', 'preallocate every object')
    .option('-y, --hyper', 'hyper volume: up to 16 PB')
    .option('-c, --copies <COPIES>', 'number of copies')
    .action(action(async (name: string, sizeText: string, o: Globals & { prealloc?: boolean; hyper?: boolean; copies?: string }) => {
      const size = sizeArg(sizeText, 'VDI size', parseSize);
      try {
        checkName(name);
      } catch (error) {
        throw new DogFailure(`Failed to create VDI ${name.slice(0, 40)}: ${(error as SdError).message}`);
      }
      const sheep = client(o);
      let entry;
      try {
        entry = await sheep.vdiCreate(name, size, copiesArg(o.copies), o.hyper === true);
      } catch (error) {
        if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`Failed to create VDI ${name}: ${error.message}`);
        throw error;
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
    }));
  withGlobals(vdi.command('list').description('list VDIs').argument('[NAME]'))
    .action(action(async (name: string | undefined, o: Globals) => {
      const rows = await client(o).vdiList();
      out(formatVdiList(name === undefined ? rows : rows.filter((r) => r.entry.name === name), o.raw === true));
    }));
  withGlobals(vdi.command('tree').description('show VDIs as trees of snapshots'))
    .action(action(async (o: Globals) => out(formatVdiTree(await client(o).vdiAll()))));
  withGlobals(vdi.command('snapshot').description('take a snapshot').argument('<NAME>'))
    .option('-s, --snapshot <TAG>', 'snapshot tag')
    .action(action(async (name: string, o: Globals & { snapshot?: string }) => {
      try {
        await client(o).vdiSnapshot(name, o.snapshot ?? '');
      } catch (error) {
        if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
        if (error.code === 'NO_VDI') throw openFailure(name, undefined, error);
        if (error.code === 'SNAPSHOT_EXISTS') {
          throw new DogFailure(`Failed to create snapshot for ${name}, maybe snapshot id (0) or tag (${o.snapshot ?? ''}) is existed`);
        }
        throw new DogFailure(`Failed to create snapshot for ${name}: ${error.message}`);
      }
    }));
  withGlobals(vdi.command('clone').description('clone a snapshot into a new writable VDI').argument('<SRC>').argument('<DST>'))
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id of SRC')
    .option('-c, --copies <COPIES>', 'number of copies')
    .action(action(async (source: string, target: string, o: Globals & { snapshot?: string; copies?: string }, command: Command) => {
      if (o.snapshot === undefined) {
        throw new DogFailure(`Only snapshot VDIs can be cloned\nPlease specify the '-s' option\n${command.helpInformation().trimEnd()}`, exitUsage);
      }
      const ref = parseSnapshotRef(o.snapshot);
      try {
        await client(o).vdiClone(source, ref, target, copiesArg(o.copies));
      } catch (error) {
        if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
        if (error.code === 'NO_VDI' || error.code === 'NO_TAG') throw openFailure(source, ref, error);
        throw new DogFailure(`Failed to create VDI ${target}: ${error.message}`);
      }
    }));
  withGlobals(vdi.command('delete').description('delete a VDI or one of its snapshots').argument('<NAME>'))
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id')
    .action(action(async (name: string, o: Globals & { snapshot?: string }) => {
      const ref = parseSnapshotRef(o.snapshot);
      try {
        await client(o).vdiDelete(name, ref);
      } catch (error) {
        if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(name, ref, error);
        throw error;
      }
    }));
  withGlobals(vdi.command('rollback').description('roll a VDI back to a snapshot').argument('<NAME>'))
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(action(async (name: string, o: Globals & { snapshot?: string; yes?: boolean }, command: Command) => {
      if (o.snapshot === undefined) throw new DogFailure(`Please specify the '-s' option\n${command.helpInformation().trimEnd()}`, exitUsage);
      const ref = parseSnapshotRef(o.snapshot);
      const sheep = client(o);
      try {
        await sheep.lookup(name, ref);
      } catch (error) {
        if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(name, ref, error);
        throw error;
      }
      if (!o.yes && !(await confirm('This operation dicards any changes made since the previous\nsnapshot was taken.  Continue? [yes/no]: '))) {
        throw new DogFailure('Rollback cancelled');
      }
      await sheep.vdiRollback(name, ref);
    }));
  withGlobals(vdi.command('resize').description('grow a VDI').argument('<NAME>').argument('<SIZE>'))
    .action(action(async (name: string, sizeText: string, o: Globals) => {
      const size = sizeArg(sizeText, 'VDI size', parseSize);
      try {
        await client(o).vdiResize(name, size);
      } catch (error) {
        if (!(error instanceof SdError) || error.code === 'NETWORK') throw error;
        if (error.code === 'NO_VDI') throw openFailure(name, undefined, error);
        throw new DogFailure(`Failed to resize VDI ${name}: ${error.message}`);
      }
    }));
  withGlobals(vdi.command('read').description('read a VDI to stdout').argument('<NAME>').argument('[OFFSET]').argument('[LEN]'))
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id')
    .action(action(async (name: string, offsetText: string | undefined, lengthText: string | undefined, o: Globals & { snapshot?: string }) => {
      const volume = await openVolume(client(o), name, parseSnapshotRef(o.snapshot));
      const { offset, length } = rangeArgs(volume.info.sizeBytes, offsetText, lengthText);
      await readRange(volume, offset, length);
    }));
  withGlobals(vdi.command('write').description('write stdin into a VDI').argument('<NAME>').argument('[OFFSET]').argument('[LEN]'))
    .action(action(async (name: string, offsetText: string | undefined, lengthText: string | undefined, o: Globals) => {
      const volume = await openVolume(client(o), name, undefined);
      const { offset, length } = rangeArgs(volume.info.sizeBytes, offsetText, lengthText);
      await writeRange(volume, offset, length);
    }));
  const object = vdi.command('object').description('object-level views of a VDI');
  withGlobals(object.command('location').description('where the replicas of an object are').argument('<NAME>').argument('[IDX]'))
    .option('-i, --index <IDX>', 'object index')
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id')
    .action(action(async (name: string, indexText: string | undefined, o: Globals & { index?: string; snapshot?: string }) => {
      const sheep = client(o);
      const volume = await openVolume(sheep, name, parseSnapshotRef(o.snapshot));
      const text = o.index ?? indexText;
      const objects = Math.ceil(volume.info.sizeBytes / volume.info.objectSizeBytes);
      if (text !== undefined && (!/^\d+$/.test(text) || Number(text) >= objects)) {
        throw new DogFailure(`Invalid object index '${text}': the VDI has ${objects} objects`);
      }
      const vid = asVid(volume.info.vid);
      const oid = text === undefined ? inodeOid(vid) : dataOid(asVid((await volume.owner(Number(text))) || vid), Number(text));
      const where = await sheep.location(oid);
      const index = text === undefined ? 0 : Number(text);
      let report = `Looking for the object ${oidHex(oid)} (vid 0x${(Number(oid >> 32n) & 0xffffff).toString(16)} idx ${index}, ${where.copies} copies) with ${where.nodeCount} nodes\n\n`;
      const nodes = await sheep.nodeList();
      for (const node of nodes) {
        report += where.holders.includes(node.id) ? `${node.id} has the object\n` : `${node.id} doesn't have the object\n`;
      }
      report += `\nAccording to sheepdog algorithm, the object should be located at:\n${where.placement.join(' ')}\n`;
      out(report);
    }));
}

function buildCluster(program: Command): void {
  const cluster = program.command('cluster').description('manage the cluster');
  withGlobals(cluster.command('info').description('show cluster status and epoch history'))
    .action(action(async (o: Globals) => out(formatClusterInfo(await client(o).clusterInfo(), o.raw === true))));
  withGlobals(cluster.command('format').description('create a new cluster'))
    .option('-c, --copies <COPIES>', 'default number of copies', '3')
    .option('-z, --block-size-shift <SHIFT>', 'object size as a power of 2 (20-26)', '22')
    .option('-b, --backend <STORE>', 'store backend (plain)', 'plain')
    .action(action(async (o: Globals & { copies: string; blockSizeShift: string; backend: string }) => {
      if (o.backend !== 'plain') throw new DogFailure(`Unknown store backend '${o.backend}': the backend is plain`);
      const shift = Number(o.blockSizeShift);
      if (!/^\d+$/.test(o.blockSizeShift) || shift < 20 || shift > 26) throw new DogFailure(`Invalid block size shift '${o.blockSizeShift}': must be 20 to 26`);
      const sheep = client(o);
      try {
        if (o.keyFile !== undefined) {
          // The key travels to no sheep: one that holds none would make a new one, not FILE's.
          await sheep.ping();
          if (sheep.rpc.unkeyed) {
            throw new DogFailure(`Format failed: the sheep holds no cluster key, so format would make a new one, not the one in ${o.keyFile}: start every sheep with -k ${o.keyFile}, or format without -k`);
          }
        }
        await sheep.format(copiesArg(o.copies)!, shift);
      } catch (error) {
        if (error instanceof SdError && error.code !== 'NETWORK') throw new DogFailure(`Format failed: ${error.message}`);
        throw error;
      }
      out('using backend plain store\n');
    }));
  withGlobals(cluster.command('shutdown').description('stop every sheep cleanly'))
    .action(action(async (o: Globals) => void (await client(o).shutdown())));
  withGlobals(cluster.command('recover').description('recover force|enable|disable').argument('<ACTION>'))
    .option('-y, --yes', 'do not ask for confirmation')
    .action(action(async (verb: string, o: Globals & { yes?: boolean }) => {
      if (verb !== 'force' && verb !== 'enable' && verb !== 'disable') throw new DogFailure(`Unknown recover action '${verb}': use force, enable or disable`, exitUsage);
      if (verb === 'force' && !o.yes && !(await confirm('Forcing recovery with the nodes present may lose data on the missing nodes.\nContinue? [yes/no]: '))) {
        throw new DogFailure('Recovery cancelled');
      }
      await client(o).recover(verb);
      if (verb === 'enable') out('Cluster recovery: enable\n');
      if (verb === 'disable') out('Cluster recovery: disable\n');
    }));
}

function buildNode(program: Command): void {
  const node = program.command('node').description('inspect and manage nodes');
  withGlobals(node.command('list').description('list nodes'))
    .action(action(async (o: Globals) => out(formatNodeList(await client(o).nodeList(), o.raw === true))));
  withGlobals(node.command('info').description('space per node'))
    .action(action(async (o: Globals) => {
      const info = await client(o).nodeInfo();
      out(formatNodeInfo(info.nodes, info.virtualBytes, o.raw === true));
    }));
  withGlobals(
    node
      .command('recovery')
      .description('show nodes in recovery; set-throttle MAX INTERVAL | get-throttle')
      .argument('[ACTION]', 'set-throttle or get-throttle')
      .argument('[MAX]', 'objects recovered per interval (1-1000)')
      .argument('[INTERVAL]', 'interval in milliseconds (1-1000)'),
  ).action(action(async (verb: string | undefined, maxText: string | undefined, intervalText: string | undefined, o: Globals) => {
    const sheep = client(o);
    if (verb === undefined) {
      out(formatRecovery(await sheep.recoveryStates(), o.raw === true));
      return;
    }
    if (verb === 'get-throttle') {
      const throttle = await sheep.getThrottle();
      out(throttle.maxObjects > 0 ? `max ${throttle.maxObjects} objects per ${throttle.intervalMs} ms\n` : 'Recovery throttle is not set\n');
      return;
    }
    if (verb !== 'set-throttle') throw new DogFailure(`Unknown recovery action '${verb}': use set-throttle or get-throttle`, exitUsage);
    if (maxText === undefined || intervalText === undefined) throw new DogFailure('Usage: dog node recovery set-throttle MAX INTERVAL', exitUsage);
    if (!/^\d+$/.test(maxText) || Number(maxText) < 1 || Number(maxText) > 1000) throw new DogFailure(`Invalid max '${maxText}': must be 1 to 1000 objects`);
    if (!/^\d+$/.test(intervalText) || Number(intervalText) < 1 || Number(intervalText) > 1000) throw new DogFailure(`Invalid interval '${intervalText}': must be 1 to 1000 ms`);
    await sheep.setThrottle(Number(maxText), Number(intervalText));
    out(`max ${Number(maxText)} objects per ${Number(intervalText)} ms\n`);
  }));
  withGlobals(node.command('kill').description('stop a node').argument('<ID>'))
    .action(action(async (idText: string, o: Globals) => {
      const sheep = client(o);
      const nodes = await sheep.nodeList();
      const target = /^\d+$/.test(idText) ? nodes[Number(idText)] : undefined;
      if (!target) throw new DogFailure(`Invalid node id '${idText}': there are ${nodes.length} nodes`);
      await sheep.killNode(target.id);
    }));
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = new Command('dog')
    .description('Sheepdog administration tool')
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({ writeErr: (text) => process.stderr.write(text.replace(/^error: /, '')) });
  program.addOption(new Option('-a, --address <ADDR>').hideHelp());
  buildCluster(program);
  buildNode(program);
  buildVdi(program);
  buildCheck<Globals>(program, { withGlobals, client, action, openVolume, failure: (message, code) => new DogFailure(message, code) });
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

await main(process.argv.slice(2));
