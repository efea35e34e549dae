// Private ZooKeeper servers for tests, through scripts/zookeeper.sh: each has its own directory,
// config and port, never the system service. Every server started here is stopped by
// `stopAllZookeepers()` (call it in afterAll) and, failing that, when the test process exits.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/zookeeper.sh');

export class PrivateZookeeper {
  constructor(
    readonly dir: string,
    readonly port: number,
    /** For an ensemble member: its id and the SERVERS list of zookeeper.sh. */
    private readonly ensemble?: { id: number; servers: string },
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts (or restarts, on the same data) the server; resolves when it answers. */
  async start(): Promise<void> {
    const extra = this.ensemble ? ['127.0.0.1', '--ensemble', String(this.ensemble.id), this.ensemble.servers] : [];
    await run('bash', [script, 'start', this.dir, String(this.port), ...extra], { timeout: 90_000 });
    running.add(this);
  }

  async stop(): Promise<void> {
    await run('bash', [script, 'stop', this.dir], { timeout: 30_000 });
    running.delete(this);
  }

  /** SIGKILL: a server that crashes. */
  kill(): void {
    const pid = this.pid();
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
  }

  pid(): number | undefined {
    try {
      return Number(fs.readFileSync(path.join(this.dir, 'zookeeper.pid'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** The server's mode (standalone, leader, follower), or null when it does not serve. */
  async mode(): Promise<string | null> {
    try {
      const { stdout } = await run('bash', [script, 'status', this.dir, String(this.port)], { timeout: 10_000 });
      return stdout.trim();
    } catch {
      return null;
    }
  }

  log(): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'zookeeper.log'), 'utf8');
    } catch {
      return '';
    }
  }
}

const running = new Set<PrivateZookeeper>();
/** Directories made here, removed by stopAllZookeepers. */
const made: string[] = [];

process.once('exit', () => {
  for (const server of running) {
    try {
      execFileSync('bash', [script, 'stop', server.dir], { timeout: 10_000 });
    } catch {
      // Best effort on the way out.
    }
  }
});

export function zookeeperInstalled(): boolean {
  return fs.existsSync('/usr/share/java/zookeeper.jar');
}

function freshDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function startZookeeper(port: number): Promise<PrivateZookeeper> {
  const server = new PrivateZookeeper(freshDir(`sd-zk-${port}-`), port);
  await server.start();
  return server;
}

/**
 * A three-server ensemble on loopback: client ports `clientPort`.., peer ports 12281.., election
 * ports 12381.. (offset by `clientPort` - 12181 so two ensembles never share).
 */
export async function startEnsemble(clientPort: number, count = 3): Promise<PrivateZookeeper[]> {
  const offset = clientPort - 12181;
  const servers = Array.from({ length: count }, (_, i) => `127.0.0.1:${12281 + offset + i}:${12381 + offset + i}`).join(',');
  const base = freshDir('sd-zk-ensemble-');
  const members = Array.from(
    { length: count },
    (_, i) => new PrivateZookeeper(path.join(base, String(i + 1)), clientPort + i, { id: i + 1, servers }),
  );
  await Promise.all(members.map((m) => m.start()));
  // Serving needs a quorum: wait until every member says leader or follower.
  const deadlineMs = Date.now() + 60_000;
  for (const member of members) {
    while ((await member.mode()) === null) {
      if (Date.now() > deadlineMs) throw new Error(`ZooKeeper ensemble did not form: ${member.log().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  return members;
}

/** Stops every server started here and removes their directories. */
export async function stopAllZookeepers(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop().catch(() => undefined)));
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}
