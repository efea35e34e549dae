// The sheep launcher: options, pid file, log, daemonizing, and mapping failures to one line.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { pino } from 'pino';
import { createLocalDriver, defaultLocalDir } from '../cluster/local.js';
import { SdError } from '../engine/errors.js';
import { systemClock } from '../io/clock.js';
import { nodeDisk } from '../io/disk.js';
import { systemRandom } from '../io/random.js';
import { tcpTransport } from '../io/transport.js';
import { parseSheepOptions, type SheepOptions } from './options.js';
import { Sheep } from './sheep.js';

const readyTimeoutMs = 30_000;

function fail(message: string): never {
  process.stderr.write(`sheep: ${message}\n`);
  process.exit(1);
}

/** Claims the store: one sheep per store. The pid file is rewritten whole (truncated). */
function claimStore(storeDir: string): void {
  fs.mkdirSync(storeDir, { recursive: true });
  const pidFile = path.join(storeDir, 'sheep.pid');
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0);
        fail(`store ${storeDir} is in use by sheep pid ${pid}`);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EPERM') fail(`store ${storeDir} is in use by pid ${pid}`);
      }
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  fs.writeFileSync(pidFile, `${process.pid}\n`, { flag: 'w' });
}

/** Re-runs this program in the foreground, detached, and waits for it to say it is up. */
function daemonize(argv: readonly string[]): Promise<never> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [script, ...argv, '--foreground'], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, SHEEP_DAEMON_CHILD: '1' },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise<never>(() => {
    const timer = setTimeout(() => fail('the daemon did not start in time'), readyTimeoutMs);
    child.on('message', (message) => {
      if (message === 'ready') {
        clearTimeout(timer);
        process.exit(0);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      process.stderr.write(stderr || `sheep: the daemon exited with code ${code}\n`);
      process.exit(code || 1);
    });
  });
}

async function run(options: SheepOptions): Promise<void> {
  const storeDir = path.resolve(options.storeDir);
  claimStore(storeDir);
  const log = pino({ level: options.logLevel }, pino.destination({ dest: path.join(storeDir, 'sheep.log'), sync: false, mkdir: true }));
  const driver = createLocalDriver({ dir: options.cluster.dir ?? defaultLocalDir(), logger: log });
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
    fs.rmSync(path.join(storeDir, 'sheep.pid'), { force: true });
    setTimeout(() => process.exit(code), 50);
  };
  const world = { clock: systemClock, transport: tcpTransport, disk: nodeDisk, driver, random: systemRandom, log };
  const sheep = new Sheep(world, { storeDir, bindAddr: options.bindAddr, self, nbd: options.nbd }, exit);
  try {
    await sheep.start();
  } catch (error) {
    log.error({ err: String(error) }, 'start failed');
    log.flush();
    driver.close();
    fs.rmSync(path.join(storeDir, 'sheep.pid'), { force: true });
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
