// The sheep launcher: options, pid file, log, daemonizing, and mapping failures to one line.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { pino } from 'pino';
import { createLocalDriver, defaultLocalDir } from '../cluster/local.js';
import { SdError } from '../engine/errors.js';
import { systemClock } from '../io/clock.js';
import { claimStore, releaseStore, spawnDaemon } from '../io/daemon.js';
import { nodeDisk } from '../io/disk.js';
import { readKeyFile } from '../io/key-file.js';
import { nodeLocalDriverIo } from '../io/local-driver-io.js';
import { systemRandom } from '../io/random.js';
import { tcpTransport } from '../io/transport.js';
import { parseSheepOptions, type SheepOptions } from './options.js';
import { Sheep } from './sheep.js';

const readyTimeoutMs = 30_000;

function fail(message: string): never {
  process.stderr.write(`sheep: ${message}\n`);
  process.exit(1);
}

/** Claims the store: one sheep per store. */
function claim(storeDir: string): void {
  const holder = claimStore(storeDir);
  if (!holder) return;
  fail(holder.sameUser ? `store ${storeDir} is in use by sheep pid ${holder.heldBy}` : `store ${storeDir} is in use by pid ${holder.heldBy}`);
}

/** Re-runs this program in the foreground, detached, and waits for it to say it is up. */
async function daemonize(argv: readonly string[]): Promise<never> {
  const outcome = await spawnDaemon(fileURLToPath(import.meta.url), [...argv, '--foreground'], readyTimeoutMs);
  if (outcome.kind === 'timeout') fail('the daemon did not start in time');
  if (outcome.kind === 'ready') process.exit(0);
  process.stderr.write(outcome.stderr || `sheep: the daemon exited with code ${outcome.code}\n`);
  process.exit(outcome.code || 1);
}

async function run(options: SheepOptions): Promise<void> {
  const storeDir = path.resolve(options.storeDir);
  // Read before anything starts: a key file that cannot be used is one line and no daemon.
  const key = options.keyFile === undefined ? undefined : { key: readKeyFile(options.keyFile), source: options.keyFile };
  claim(storeDir);
  const log = pino({ level: options.logLevel }, pino.destination({ dest: path.join(storeDir, 'sheep.log'), sync: false, mkdir: true }));
  const driver = createLocalDriver({
    dir: options.cluster.dir ?? defaultLocalDir(),
    clock: systemClock,
    io: nodeLocalDriverIo,
    random: systemRandom,
    logger: log,
  });
  const self = {
    id: `${options.myAddr}:${options.port}`,
    addr: options.myAddr,
    port: options.port,
    zone: options.zone,
    vnodes: options.vnodes,
    nbdPort: options.nbd?.port ?? 0,
  };
  const exit = (code: number) => {
    log.flush();
    releaseStore(storeDir);
    systemClock.after(50, () => process.exit(code));
  };
  const world = { clock: systemClock, transport: tcpTransport, disk: nodeDisk, driver, random: systemRandom, log };
  const sheep = new Sheep(world, { storeDir, bindAddr: options.bindAddr, self, nbd: options.nbd, ...(key ? { key } : {}) }, exit);
  try {
    await sheep.start();
  } catch (error) {
    log.error({ err: String(error) }, 'start failed');
    log.flush();
    driver.close();
    releaseStore(storeDir);
    throw error;
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void sheep.stop(0));
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error.stack }, 'uncaught exception');
    log.flush();
    process.exit(70);
  });
  if (process.send) {
    process.send('ready');
    process.disconnect();
  }
}

export async function main(argv: readonly string[]): Promise<void> {
  let options: SheepOptions;
  try {
    options = parseSheepOptions(argv);
  } catch (error) {
    if (error instanceof CommanderError) process.exit(error.exitCode);
    if (error instanceof SdError) fail(error.message);
    throw error;
  }
  if (!options.foreground) return daemonize(argv);
  try {
    await run(options);
  } catch (error) {
    fail(error instanceof SdError ? error.message : error instanceof Error ? error.message : String(error));
  }
}

await main(process.argv.slice(2));
