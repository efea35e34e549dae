// The sheep launcher: options, pid file, log, daemonizing, and mapping failures to one line.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { pino } from 'pino';
import { createLocalDriver, defaultLocalDir } from '../cluster/local.js';
import { createZkDriver } from '../cluster/zookeeper.js';
import { SdError } from '../engine/errors.js';
import { systemClock } from '../io/clock.js';
import { spawnDaemon } from '../io/daemon.js';
import { nodeDisk } from '../io/disk.js';
import { collectGarbage } from '../io/memory.js';
import { readKeyFile } from '../io/key-file.js';
import { nodeLocalDriverIo } from '../io/local-driver-io.js';
import { connectZk } from '../io/zk-client.js';
import { systemRandom } from '../io/random.js';
import { lockStore, type StoreLock } from '../io/store-lock.js';
import { openFilesLimit } from '../io/fd-limit.js';
import { openLogFile } from '../io/log-file.js';
import { rpcConnectionsCap } from '../engine/limits.js';
import { tcpTransport } from '../io/transport.js';
import { prepareNbdTls } from '../nbd/tls.js';
import { readBootId } from '../io/boot-id.js';
import { logLevelControl, pinoLevel } from './log-level.js';
import { serveMetrics } from '../io/metrics-server.js';
import { parseSheepOptions, type SheepOptions } from './options.js';
import { Sheep } from './sheep.js';

/** How long a stopping sheep waits for its log to be written before it exits anyway. */
const exitFlushWaitMs = 500;

function fail(message: string): never {
  process.stderr.write(`sheep: ${message}\n`);
  process.exit(1);
}

/** Claims the store: one sheep per store, the holder of its lock (store-lock.ts). */
function claim(storeDir: string): StoreLock {
  const outcome = lockStore(storeDir);
  if (outcome.locked) return outcome.lock;
  fail(`store ${storeDir} is in use by sheep pid ${outcome.holderPid ?? '(unknown)'}`);
}

/** Re-runs this program in the foreground, detached, and waits for it to say it is up. */
async function daemonize(argv: readonly string[], readyTimeoutMs: number): Promise<never> {
  const outcome = await spawnDaemon(fileURLToPath(import.meta.url), [...argv, '--foreground'], readyTimeoutMs);
  if (outcome.kind === 'timeout') fail(`the daemon did not start within ${readyTimeoutMs / 1000} s; it was stopped`);
  if (outcome.kind === 'ready') process.exit(0);
  process.stderr.write(outcome.stderr || `sheep: the daemon exited with code ${outcome.code}\n`);
  process.exit(outcome.code || 1);
}

async function run(options: SheepOptions): Promise<void> {
  const storeDir = path.resolve(options.storeDir);
  const diskDirs = options.diskDirs.map((dir) => path.resolve(dir));
  if (new Set([storeDir, ...diskDirs]).size !== diskDirs.length + 1) fail('a directory is given twice in the store path');
  // TLS credentials and the key file are read before anything is claimed or joined: a file that
  // cannot be used is one line and no daemon.
  const nbd = options.nbd && { host: options.nbd.host, port: options.nbd.port, tls: prepareNbdTls(options.nbd.tls), idleTimeoutMs: options.nbd.idleTimeoutMs };
  const key = options.keyFile === undefined ? undefined : { key: readKeyFile(options.keyFile), source: options.keyFile };
  // Held until this process exits, whatever the way: the kernel releases it, nobody else need.
  claim(storeDir);
  // Launched by a daemonizing `sheep` that has gone away before we were up: nobody would learn
  // that we started, so do not.
  let started = false;
  if (process.send) process.once('disconnect', () => void (started || process.exit(1)));
  // Kept in the store; a full store drops lines (counted), never blocks the daemon (log-file.ts).
  const logFile = openLogFile(path.join(storeDir, 'sheep.log'));
  const log = pino({ level: pinoLevel(options.logLevel) }, logFile);
  const logLevel = logLevelControl(log, options.logLevel);
  const cluster = options.cluster;
  const newDriver = () =>
    cluster.kind === 'zookeeper'
      ? createZkDriver({ spec: cluster.spec, connect: connectZk, clock: systemClock, random: systemRandom, logger: log })
      : createLocalDriver({
          dir: cluster.dir ?? defaultLocalDir(),
          clock: systemClock,
          io: nodeLocalDriverIo,
          random: systemRandom,
          logger: log,
        });
  const driver = newDriver();
  const self = {
    id: `${options.myAddr}:${options.port}`,
    addr: options.myAddr,
    port: options.port,
    zone: options.zone,
    vnodes: options.vnodes,
    nbdPort: options.nbd?.port ?? 0,
  };
  const exit = (code: number) => {
    logFile.flush(() => process.exit(code));
    systemClock.after(exitFlushWaitMs, () => process.exit(code));
  };
  const bootId = readBootId();
  const world = { clock: systemClock, transport: tcpTransport, disk: nodeDisk, driver, rejoinDriver: newDriver, random: systemRandom, log, logLevel, releaseMemory: collectGarbage, ...(bootId === undefined ? {} : { bootId }) };
  const openFiles = openFilesLimit();
  const connectionsMax = rpcConnectionsCap(openFiles);
  log.info({ openFiles, connectionsMax }, 'descriptor limit');
  // Not an option: only the integrity benchmark turns block sums off, to measure what they cost.
  const blockSums = process.env['SHEEP_BENCH_NO_BLOCK_SUMS'] !== '1';
  const sheep = new Sheep(world, { storeDir, diskDirs, bindAddr: options.bindAddr, self, nbd, connectionsMax, scrub: options.scrub && blockSums, blockSums, writethrough: options.writethrough, ...(key ? { key } : {}), keyTravels: cluster.kind === 'local' }, exit);
  try {
    await sheep.start();
    if (options.metrics) {
      const where = options.metrics;
      await serveMetrics(where.host, where.port, () => sheep.integrity.scrape()).catch((error: unknown) => {
        throw new SdError('INVALID_ARGUMENT', `cannot serve --metrics on ${where.host}:${where.port}: ${(error as Error).message}`);
      });
      log.info(where, 'serving metrics');
    }
  } catch (error) {
    log.error({ err: String(error) }, 'start failed');
    logFile.flushSync();
    driver.close();
    throw error;
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void sheep.stop(0));
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error.stack }, 'uncaught exception');
    logFile.flushSync();
    process.exit(70);
  });
  started = true;
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
  if (!options.foreground) return daemonize(argv, options.startTimeoutSec * 1000);
  try {
    await run(options);
  } catch (error) {
    fail(error instanceof SdError ? error.message : error instanceof Error ? error.message : String(error));
  }
}

await main(process.argv.slice(2));
