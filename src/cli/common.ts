// What every dog command shares: the global options, the one sheep it talks to, and the way a
// failure becomes one line and an exit code. Command groups live in their own modules.
import { Command } from 'commander';
import * as readline from 'node:readline';
import { SdError } from '../engine/errors.js';
import { copiesMax, portDefault } from '../engine/limits.js';
import { snapshotRefText, type SnapshotRef } from '../engine/vdi.js';
import { VolumeIo } from '../volume/volume-io.js';
import { SheepClient, sheepClientWorld } from '../rpc/sheep-client.js';

export const exitFailure = 1;
export const exitUsage = 64;

/** A failure already worded for the user. */
export class DogFailure extends Error {
  constructor(message: string, readonly exitCode = exitFailure) {
    super(message);
  }
}

export interface Globals {
  address: string;
  port: string;
  raw?: boolean;
  keyFile?: string;
}

export function withGlobals(command: Command): Command {
  return command
    .option('-a, --address <ADDR>', 'sheep address', '127.0.0.1')
    .option('-p, --port <PORT>', 'sheep port', String(portDefault))
    .option('-r, --raw', 'raw output, one line per row')
    .option('-k, --key-file <FILE>', 'cluster key file (default: the sheep\'s STORE/cluster.key on this host, else /etc/sheepdog/cluster.key)');
}

export function client(globals: Globals): SheepClient {
  const port = Number(globals.port);
  if (!/^\d+$/.test(globals.port) || port < 1 || port > 65535) throw new DogFailure(`Invalid port number '${globals.port}'`);
  return new SheepClient(globals.address, port, sheepClientWorld(globals.keyFile));
}

export function openFailure(name: string, ref: SnapshotRef, error: SdError): DogFailure {
  const { id, tag } = snapshotRefText(ref);
  return new DogFailure(`Failed to open VDI ${name} (snapshot id: ${id} snapshot tag: ${tag}): ${error.message}`);
}

/** A size typed by the user: its parse error becomes dog's one-line failure. */
export function sizeArg<T extends number | bigint>(text: string, what: string, parse: (text: string, what: string) => T): T {
  try {
    return parse(text, what);
  } catch (error) {
    throw new DogFailure((error as SdError).message);
  }
}

export function copiesArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > copiesMax) {
    throw new DogFailure(`Invalid copies number, must be an integer between 1 and ${copiesMax}: '${text}'`);
  }
  return Number(text);
}

export function out(text: string): void {
  process.stdout.write(text);
}

export async function confirm(question: string): Promise<boolean> {
  process.stdout.write(question);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    lines.close();
    return line.trim() === 'yes' || line.trim() === 'y';
  }
  return false;
}

/** Exits once stdout has drained: with a pipe, process.exit() would cut the output short. */
export function exitWhenFlushed(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

/** Runs a command body, turning failures into one line and an exit code. */
export function action<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (error) {
      if (error instanceof DogFailure) {
        process.stderr.write(`${error.message}\n`);
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

export async function openVolume(sheep: SheepClient, name: string, ref: SnapshotRef): Promise<VolumeIo> {
  try {
    const entry = await sheep.lookup(name, ref);
    await sheep.enableDirectIo();
    return new VolumeIo(sheep, entry);
  } catch (error) {
    if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw openFailure(name, ref, error);
    throw error;
  }
}

