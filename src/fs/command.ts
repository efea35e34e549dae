// The sheepfs command: parse arguments, connect to a sheep, mount, and stay until unmounted.
// By default it re-spawns itself detached with -f and returns once the child reports the mount
// is up (exit 0) or failed (exit 1, the child's one-line reason on stderr). The backend comes
// from the entry point: the cluster in src/fs/main.ts, an in-memory double in the tests.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { pino, type Logger } from 'pino';
import { asSdError, sdError } from '../engine/errors.js';
import { portDefault } from '../engine/limits.js';
import { packageVersion } from '../engine/version.js';
import type { SheepfsBackend } from './backend.js';
import { mountSheepfs, prepareMountpoint, type SheepfsMount } from './sheepfs.js';

export const logFileDefault = '/var/log/sheepfs.log';
/** How long the background parent waits for the child to mount before giving up. */
export const daemonStartTimeoutMs = 60_000;
/** A ping that hangs is as bad as one that fails: start-up must fail fast. */
export const pingTimeoutMs = 10_000;
/** Marks the re-spawned child, which reports over the IPC channel instead of stderr. */
const daemonChildEnv = 'SHEEPFS_DAEMON_CHILD';

interface CliOptions {
  address: string;
  port: number;
  foreground: boolean;
  options: string[];
  log?: string;
  logLevel: string;
  keyFile?: string;
  shared: boolean;
}

type ChildReport =
  { type: 'ready' } | { type: 'failed'; message: string } | { type: 'notice'; message: string };

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new InvalidArgumentError('not a TCP port');
  return port;
}

function collectOptions(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').filter((option) => option.length > 0)];
}

/** sheepfs's options as a commander program (exported for its man page). */
export function buildProgram(run: (mountpoint: string, options: CliOptions) => Promise<void>): Command {
  return new Command('sheepfs')
    .description('Mount a Sheepdog cluster as files (cluster/, node/, vdi/, volume/) over FUSE')
    .argument('<mountpoint>', 'an empty directory that is not already a mountpoint')
    .option('-a, --address <addr>', 'address of a sheep', '127.0.0.1')
    .option('-p, --port <port>', 'port of the sheep', parsePort, portDefault)
    .option('-k, --key-file <file>', 'cluster key file (default: the sheep\'s STORE/cluster.key on this host, else /etc/sheepdog/cluster.key)')
    .option('-f, --foreground', 'stay in the foreground (logs to stderr unless --log)', false)
    .option('--shared', "mount writable VDIs shared: writers through other nodes may open them too (docs/sheepfs.md)", false)
    .option(
      '-o, --options <fuse-options>',
      'extra FUSE options, comma separated, repeatable',
      collectOptions,
      [],
    )
    .option('--log <file>', `log file (default: stderr with -f, ${logFileDefault} in background)`)
    .option('--log-level <level>', 'pino log level', 'info')
    .version(`sheepfs version ${packageVersion}`, '-v, --version', 'show the version')
    .action(run);
}

function isDaemonChild(): boolean {
  return process.env[daemonChildEnv] === '1' && typeof process.send === 'function';
}

/** Resolves once the parent has the message: the child may exit right after a failure. */
function report(message: ChildReport): Promise<void> {
  if (!isDaemonChild()) {
    if (message.type !== 'ready') process.stderr.write(`sheepfs: ${message.message}\n`);
    return Promise.resolve();
  }
  return new Promise((resolve) => process.send?.(message, undefined, {}, () => resolve()));
}

function makeLogger(options: CliOptions): Logger {
  const destination =
    options.log === undefined
      ? pino.destination(2)
      : pino.destination({ dest: options.log, mkdir: true, sync: true });
  return pino({ name: 'sheepfs', level: options.logLevel }, destination);
}

/**
 * Makes the backend for a sheep at address:port, proving the key of `keyFile` (absolute; default:
 * found as src/rpc/key-auth.ts says). The child makes its own after the re-spawn.
 */
export type OpenBackend = (
  address: string,
  port: number,
  keyFile: string | undefined,
  /** The writer's lock a mounted working VDI takes: who the mount is, and whether it is shared. */
  writer?: { client: string; shared: boolean },
) => SheepfsBackend | Promise<SheepfsBackend>;

async function pingWithin(backend: SheepfsBackend, address: string, port: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(sdError('NETWORK', 'no answer')), pingTimeoutMs);
  });
  try {
    await Promise.race([backend.ping(), timeout]);
  } catch (error) {
    const sd = asSdError(error);
    // A key problem says so itself (it names the sheep): it is no reachability problem.
    if (sd.code === 'AUTH') throw sd;
    throw sdError('NETWORK', `cannot reach a sheep at ${address}:${port}: ${sd.message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Stays until unmounted: by a signal (we unmount) or from outside (`umount`, `fusermount -u`). */
function serveUntilGone(mount: SheepfsMount, backend: SheepfsBackend, logger: Logger): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'unmounting');
    mount.unmount().catch((error: unknown) => {
      logger.error({ err: error }, 'unmount failed');
      process.exit(1);
    });
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, stop);
  // A bug must not leave a dead mount ("Transport endpoint is not connected") behind.
  const crash = (error: unknown): void => {
    logger.fatal({ err: error }, 'crashed: unmounting');
    mount.unmount().finally(() => process.exit(1));
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  void mount.gone.then(async (how) => {
    logger.info({ how }, 'mount gone');
    await backend.close().catch(() => undefined);
    logger.flush();
    process.exit(0);
  });
}

async function runForeground(
  mountpoint: string,
  options: CliOptions,
  openBackend: OpenBackend,
): Promise<void> {
  let backend: SheepfsBackend | undefined;
  try {
    for (const message of prepareMountpoint(mountpoint)) await report({ type: 'notice', message });
    const logger = makeLogger(options);
    backend = await openBackend(options.address, options.port, options.keyFile, {
      client: `sheepfs ${os.hostname()} pid ${process.pid} on ${path.resolve(mountpoint)}`,
      shared: options.shared,
    });
    await pingWithin(backend, options.address, options.port);
    const mount = await mountSheepfs({ mountpoint, backend, fuseOptions: options.options, logger });
    if (isDaemonChild()) process.chdir('/');
    await report({ type: 'ready' });
    if (isDaemonChild()) process.disconnect?.();
    serveUntilGone(mount, backend, logger);
  } catch (error) {
    await backend?.close().catch(() => undefined);
    await report({ type: 'failed', message: oneLine(error) });
    process.exit(1);
  }
}

export function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? 'failed';
}

function childArguments(mountpoint: string, options: CliOptions): string[] {
  const args = [
    '-f',
    '-a',
    options.address,
    '-p',
    String(options.port),
    '--log-level',
    options.logLevel,
  ];
  args.push('--log', path.resolve(options.log ?? logFileDefault));
  if (options.keyFile !== undefined) args.push('-k', options.keyFile);
  if (options.options.length > 0) args.push('-o', options.options.join(','));
  if (options.shared) args.push('--shared');
  return [...args, '--', mountpoint];
}

/** Re-spawns detached with -f and relays the child's verdict as our exit code. */
function runBackground(mountpoint: string, options: CliOptions): Promise<void> {
  const script = process.argv[1] ?? '';
  const child = spawn(
    process.execPath,
    [...process.execArgv, script, ...childArguments(mountpoint, options)],
    {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      env: { ...process.env, [daemonChildEnv]: '1' },
    },
  );
  return new Promise<void>(() => {
    const finish = (code: number, message?: string): void => {
      if (message !== undefined) process.stderr.write(`sheepfs: ${message}\n`);
      child.removeAllListeners();
      if (child.connected) child.disconnect();
      child.unref();
      process.exit(code);
    };
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      finish(1, `the mount did not come up within ${daemonStartTimeoutMs / 1000} s`);
    }, daemonStartTimeoutMs);
    child.on('message', (message: ChildReport) => {
      if (message.type === 'notice') process.stderr.write(`sheepfs: ${message.message}\n`);
      if (message.type === 'ready') finish(0);
      if (message.type === 'failed') finish(1, message.message);
      if (message.type !== 'notice') clearTimeout(timer);
    });
    child.on('error', (error) => finish(1, `cannot start: ${error.message}`));
    child.on('exit', (code) => finish(1, `exited with code ${code ?? 'unknown'} before mounting`));
  });
}

export async function runSheepfs(argv: readonly string[], openBackend: OpenBackend): Promise<void> {
  const program = buildProgram(async (mountpointArgument, options) => {
    const mountpoint = path.resolve(mountpointArgument);
    // The daemon leaves its directory for /: a relative key path would point elsewhere then.
    if (options.keyFile !== undefined) options.keyFile = path.resolve(options.keyFile);
    if (options.foreground) await runForeground(mountpoint, options, openBackend);
    else await runBackground(mountpoint, options);
  });
  await program.parseAsync([...argv]);
}
