// What every dog command shares: the global options, the client they make, one-line failures
// with the original's exit codes, the confirmation prompt, and -T's timing.
import { Command } from 'commander';
import { performance } from 'node:perf_hooks';
import * as readline from 'node:readline';
import { SdError } from '../engine/errors.js';
import { encodePolicy, isValidPolicy } from '../engine/ec-layout.js';
import { copiesMax, portDefault } from '../engine/limits.js';
import { snapshotRefText, type SnapshotRef } from '../engine/vdi.js';
import { VolumeIo } from '../volume/volume-io.js';
import { SheepClient, sheepClientWorld } from '../rpc/sheep-client.js';

/** The original's exit codes (include/exits.h). */
export const exitSuccess = 0;
export const exitFailure = 1;
export const exitSysfail = 2;
export const exitUsage = 64;

/** A failure already worded for the user; an empty message prints nothing (a declined prompt). */
export class DogFailure extends Error {
  constructor(
    message: string,
    readonly exitCode = exitFailure,
  ) {
    super(message);
  }
}

export interface Globals {
  address: string;
  port: string;
  raw?: boolean;
  verbose?: boolean;
  time?: boolean;
  keyFile?: string;
}

export function withGlobals(command: Command): Command {
  return command
    .option('-a, --address <ADDR>', 'specify the daemon address', '127.0.0.1')
    .option('-p, --port <PORT>', 'specify the daemon port', String(portDefault))
    .option('-r, --raw', 'raw output mode: omit headers, separate fields with single spaces and print all sizes in decimal bytes')
    .option('-v, --verbose', 'print more information than default')
    .option('-T, --time', 'show elapsed time (and, on stderr, the time of each request)')
    .option('-k, --key-file <FILE>', 'cluster key file (default: the sheep\'s STORE/cluster.key on this host, else /etc/sheepdog/cluster.key)');
}

/** `-T`: each request's time on stderr, as it settles. */
function requestTimer(globals: Globals): ((op: string, elapsedMs: number, ok: boolean) => void) | undefined {
  if (!globals.time) return undefined;
  return (op, elapsedMs, ok) => process.stderr.write(`request ${op}: ${elapsedMs} ms${ok ? '' : ' (failed)'}\n`);
}

export function client(globals: Globals): SheepClient {
  const port = Number(globals.port);
  if (!/^\d+$/.test(globals.port) || port < 1 || port > 65535) throw new DogFailure(`Invalid port number '${globals.port}'`, exitUsage);
  const onRequest = requestTimer(globals);
  return new SheepClient(globals.address, port, { ...sheepClientWorld(globals.keyFile), ...(onRequest ? { onRequest } : {}) });
}

export function openFailure(name: string, ref: SnapshotRef, error: SdError): DogFailure {
  const { id, tag } = snapshotRefText(ref);
  return new DogFailure(`Failed to open VDI ${name} (snapshot id: ${id} snapshot tag: ${tag}): ${error.message}`);
}

const replicatedUsage = `To create replicated vdi, set -c x\n  x(1 to ${copiesMax})   - number of replicated copies`;
const erasureUsage = 'To create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  y(1 to 15)   - number of parity strips';

/** `-c COPIES` where erasure coding does not apply (alter-copy): the original's refusal, whole. */
export function copiesArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > copiesMax) {
    throw new DogFailure(`Invalid parameter ${text}\n${replicatedUsage}\n${erasureUsage}`);
  }
  return Number(text);
}

/** `-c COPIES` or `-c D:P` (format, vdi create): copies and the copy_policy byte, as the original's parse_copy. */
export function redundancyArg(text: string | undefined): { copies: number; copyPolicy?: number } | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+):(\d+)$/.exec(text);
  if (match) {
    const data = Number(match[1]);
    const parity = Number(match[2]);
    if (isValidPolicy(data, parity)) return { copies: data + parity, copyPolicy: encodePolicy({ data, parity }) };
  } else if (/^\d+$/.test(text) && Number(text) >= 1 && Number(text) <= copiesMax) {
    return { copies: Number(text) };
  }
  throw new DogFailure(`Invalid parameter ${text}\n${replicatedUsage}\n${erasureUsage}`);
}

const sizeShifts: Record<string, number> = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40, p: 50 };

/**
 * A size or offset as the original's option_parse_size read it: a number, decimals allowed,
 * with an optional B, K, M, G, T or P (powers of 1024; a B after the unit is tolerated too).
 */
export function userSize(text: string): bigint {
  const match = /^(\d+)(?:\.(\d+))?([bkmgtp]?)b?$/i.exec(text);
  if (match === null) {
    throw new DogFailure(
      `Invalid size '${text}'\nYou may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.`,
      exitUsage,
    );
  }
  const shift = sizeShifts[match[3]!.toLowerCase()]!;
  const whole = BigInt(match[1]!) << BigInt(shift);
  const fraction = match[2] === undefined ? 0n : BigInt(Math.floor(Number(`0.${match[2]}`) * 2 ** shift));
  return whole + fraction;
}

export function out(text: string): void {
  process.stdout.write(text);
}

/**
 * The original's confirm(): the question on stdout, and unless the answer starts with "yes" (any
 * case) the command ends there, successfully and silently.
 */
export async function confirm(question: string): Promise<void> {
  process.stdout.write(question);
  const lines = readline.createInterface({ input: process.stdin });
  let answer = '';
  for await (const line of lines) {
    answer = line;
    break;
  }
  lines.close();
  if (answer.slice(0, 3).toLowerCase() !== 'yes') throw new DogFailure('', exitSuccess);
}

/** Exits once stdout has drained: with a pipe, process.exit() would cut the output short. */
export function exitWhenFlushed(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

/** `-T`: the original's last line, the time since dog started. */
function elapsedLine(globals: unknown): string {
  const time = typeof globals === 'object' && globals !== null && (globals as Globals).time === true;
  return time ? `\nElapsed time: ${(performance.now() / 1000).toFixed(3)} seconds\n` : '';
}

/** strerror(3) of the errors a connection attempt meets. */
const connectErrors: Record<string, string> = {
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  EADDRNOTAVAIL: 'Cannot assign requested address',
};

/** A connection that failed, in the original's words (lib/net.c connect_to) where it had them. */
function networkFailure(message: string): string {
  const refused = /^cannot connect to (\S+): (E[A-Z]+)$/.exec(message);
  const reason = refused ? connectErrors[refused[2]!] : undefined;
  if (refused && reason !== undefined) return `failed to connect to ${refused[1]}: ${reason}`;
  return `Failed to connect to sheep: ${message}`;
}

/** Runs a command body, turning failures into one line and an exit code. */
export function action<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    // commander passes the options after the arguments, then the command itself.
    const globals = args.at(-2);
    try {
      await body(...args);
    } catch (error) {
      if (error instanceof DogFailure) {
        if (error.message !== '') process.stderr.write(`${error.message}\n`);
        exitWhenFlushed(error.exitCode);
        return;
      }
      if (error instanceof SdError) {
        process.stderr.write(`${error.code === 'NETWORK' ? networkFailure(error.message) : error.message}\n`);
        exitWhenFlushed(exitFailure);
        return;
      }
      throw error;
    }
    out(elapsedLine(globals));
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
