// Hosts on one machine for the multi-host tests: network namespaces on a bridge, made and removed
// by scripts/netns-hosts.sh (the one implementation, shared with `npm run lab`). Host n (1-based)
// has its own address and loopback; the test process reaches every host through the bridge's
// address on the machine. Namespaces share the machine's files and pids, so stores, logs and
// /proc stay readable. `create` first removes what a crashed run left; `destroy` kills whatever
// runs in the hosts and removes them, and is safe to call twice.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { repoRoot, run, type NodePlace, type ProcessResult } from './cluster.js';

const script = path.join(repoRoot, 'scripts', 'netns-hosts.sh');
const zookeeperScript = path.join(repoRoot, 'scripts', 'zookeeper.sh');
const scriptTimeoutMs = 30_000;
const runTimeoutMs = 120_000;

export interface NetnsHostsOptions {
  count: number;
  /** Namespace names are PREFIX1..PREFIXn; default sdt-t. */
  prefix?: string;
  bridge?: string;
  /** The first three bytes of every address; default 10.77.0. */
  net?: string;
  /** The bridge's last byte; host n gets base + n. Default 10. */
  base?: number;
}

export class NetnsHosts {
  readonly count: number;
  readonly env: NodeJS.ProcessEnv;
  private readonly prefix: string;
  private readonly net: string;
  private readonly base: number;

  private constructor(options: NetnsHostsOptions) {
    this.count = options.count;
    this.prefix = options.prefix ?? 'sdt-t';
    this.net = options.net ?? '10.77.0';
    this.base = options.base ?? 10;
    this.env = {
      ...process.env,
      NETNS_PREFIX: this.prefix,
      NETNS_BRIDGE: options.bridge ?? 'sdtbr0',
      NETNS_NET: this.net,
      NETNS_BASE: String(this.base),
    };
  }

  /** Sweeps leftovers of an earlier run, then makes hosts 1..count. */
  static create(options: NetnsHostsOptions): NetnsHosts {
    const hosts = new NetnsHosts(options);
    try {
      hosts.script(['up', String(options.count)]);
    } catch (error) {
      // Half-made hosts go at once. (No exit hook: the next test file may use the same names.)
      hosts.destroyQuietly();
      throw error;
    }
    return hosts;
  }

  /** Removes every host of `options.prefix` and the bridge, whoever made them (after a crash). */
  static sweep(options: Omit<NetnsHostsOptions, 'count'>): void {
    new NetnsHosts({ ...options, count: 0 }).destroy();
  }

  /** The machine's own address on the bridge: what the hosts see the test process as. */
  get machineAddress(): string {
    return `${this.net}.${this.base}`;
  }

  name(host: number): string {
    return `${this.prefix}${this.checked(host)}`;
  }

  address(host: number): string {
    return `${this.net}.${this.base + this.checked(host)}`;
  }

  /** The prefix that runs a program with host n's network (it execs: the pid is the program's). */
  wrap(host: number): string[] {
    return ['nsenter', `--net=/run/netns/${this.name(host)}`, '--'];
  }

  /** A placement for test/support/cluster.ts: a sheep on host n at its address. */
  place(host: number): NodePlace {
    return { address: this.address(host), wrap: this.wrap(host) };
  }

  /** Runs a program on host n to completion (killed at the timeout). */
  run(
    host: number,
    command: string,
    args: readonly string[],
    options: { input?: Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<ProcessResult> {
    const [program, ...rest] = [...this.wrap(host), command, ...args];
    return run(program!, rest, { timeoutMs: options.timeoutMs ?? runTimeoutMs, ...options });
  }

  /**
   * Starts a private ZooKeeper server on host n (scripts/zookeeper.sh, data in `dir`) listening on
   * the host's address; `destroy` kills it with the host, `stop` stops it before.
   */
  async startZookeeper(host: number, port: number, dir: string): Promise<{ address: string; stop(): Promise<void> }> {
    const started = await this.run(host, 'bash', [zookeeperScript, 'start', dir, String(port), this.address(host)]);
    if (started.code !== 0) throw new Error(`ZooKeeper on host ${host} did not start: ${started.stderr}`);
    return {
      address: `${this.address(host)}:${port}`,
      stop: async () => {
        await run('bash', [zookeeperScript, 'stop', dir], { timeoutMs: 30_000 });
      },
    };
  }

  /** Pulls host n's cable: its bridge-side link goes down; the host keeps its own address. */
  cut(host: number): void {
    this.script(['cut', String(this.checked(host))]);
  }

  restore(host: number): void {
    this.script(['restore', String(this.checked(host))]);
  }

  /** Kills everything running in the hosts and removes them and the bridge. */
  destroy(): void {
    this.script(['down']);
  }

  private destroyQuietly(): void {
    spawnSync('bash', [script, 'down'], { env: this.env, timeout: scriptTimeoutMs });
  }

  private checked(host: number): number {
    if (!Number.isInteger(host) || host < 1 || host > this.count) throw new RangeError(`no host ${host} (1-${this.count})`);
    return host;
  }

  private script(args: readonly string[]): void {
    const result = spawnSync('bash', [script, ...args], { env: this.env, encoding: 'utf8', timeout: scriptTimeoutMs });
    if (result.status !== 0) {
      throw new Error(`netns-hosts.sh ${args.join(' ')} exited ${result.status ?? result.signal}: ${result.stderr}`);
    }
  }
}
