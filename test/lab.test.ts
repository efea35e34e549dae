// `npm run lab` and scripts/provision-host.sh, for real, on namespace hosts: the lab as a person
// runs it (with a temp mount point and store root instead of /sheep and /var/lib), and the
// Vagrantfile's own provisioning commands run inside three hosts as `vagrant up` would run them
// on three VMs, ending with `cat /sheep/node/list` on node1. Needs root. Sheep port 7000 inside
// the hosts, NBD 8750 on their loopback, ZooKeeper 12203 and 12204, a sheep on 127.0.0.1:8760;
// namespaces sdt-t1..3, bridge sdtbr0.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dog, md5, pattern, repoRoot, run } from './support/cluster.js';
import { NetnsHosts } from './support/netns-hosts.js';
import { forceUnmount, isMounted } from './support/sheepfs-helpers.js';
import { ensureVagrant, vagrantPlan, type VagrantMachine } from './support/vagrant-plan.js';

const MiB = 1024 * 1024;
const workDir = fs.mkdtempSync('/tmp/sheep-lab-test-');
const labRoot = path.join(workDir, 'lab');
const labMount = path.join(workDir, 'sheep');
const clusterPort = 8760;
const nbdPort = 8750;
const netns = { LAB_PREFIX: 'sdt-t', LAB_BRIDGE: 'sdtbr0', LAB_NET: '10.77.0', LAB_BASE: '10' };
const labEnv = {
  ...process.env,
  ...netns,
  LAB_ROOT: labRoot,
  LAB_MOUNT: labMount,
  LAB_NBD_PORT: String(nbdPort),
  LAB_ZOOKEEPER_PORT: '12203',
  SHEEP_BASE_PORT: String(clusterPort),
};
const address = (n: number) => `10.77.0.${10 + n}`;

function lab(args: string[] = [], timeoutMs = 300_000) {
  return run('npm', ['run', '-s', 'lab', '--', ...args], { env: labEnv, timeoutMs });
}

function ourNamespaces(): string[] {
  return (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((line) => /^sdt-t\d/.test(line));
}

/** `cat FILE` in a child process, killed at the timeout: the test process never touches a mount. */
async function cat(file: string): Promise<string> {
  const result = await run('cat', [file], { timeoutMs: 30_000 });
  if (result.code !== 0) throw new Error(`cat ${file} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

const threeNodes = [
  '  Id   Host:Port         V-Nodes       Zone',
  '   0   10.77.0.11:7000     \t128  184569098',
  '   1   10.77.0.12:7000     \t128  201346314',
  '   2   10.77.0.13:7000     \t128  218123530',
  '',
].join('\n');

afterAll(async () => {
  await lab(['stop'], 60_000).catch(() => undefined);
  forceUnmount(labMount);
  NetnsHosts.sweep({ prefix: 'sdt-t' });
  spawnSync('bash', [path.join(repoRoot, 'scripts', 'zookeeper.sh'), 'stop', path.join(labRoot, 'zookeeper')], { timeout: 30_000 });
  fs.rmSync(workDir, { recursive: true, force: true });
}, 120_000);

describe('npm run lab', () => {
  it('refuses politely while npm run cluster holds the mount point', async () => {
    // What `npm run cluster` leaves: a sheep answering on its first port and a mount.
    const cluster = new Cluster({ basePort: clusterPort, prefix: 'sheep-lab-cluster-' });
    fs.mkdirSync(labMount, { recursive: true });
    try {
      await cluster.start(0);
      expect(spawnSync('mount', ['-t', 'tmpfs', 'stand-in', labMount]).status).toBe(0);
      const refused = await lab();
      expect({ code: refused.code, stdout: refused.stdout, stderr: refused.stderr }).toEqual({
        code: 1,
        stdout: '',
        stderr:
          `lab: error: ${labMount} is mounted already by \`npm run cluster\` (its sheep answer on 127.0.0.1:${clusterPort}): ` +
          'stop it with `npm run cluster -- stop`, then run `npm run lab` again\n',
      });
      await cluster.stop();
      const other = await lab();
      expect({ code: other.code, stderr: other.stderr }).toEqual({
        code: 1,
        stderr: `lab: error: ${labMount} is mounted already (not by the lab): unmount it (fusermount -u ${labMount}), or give another LAB_MOUNT\n`,
      });
      expect(ourNamespaces()).toEqual([]);
    } finally {
      spawnSync('umount', [labMount]);
      await cluster.stop();
    }
  });

  it('makes three hosts over ZooKeeper, formats copies 3, mounts sheepfs, prints next steps', async () => {
    const started = await lab();
    expect(started.code, started.stderr).toBe(0);
    const lines = started.stdout.split('\n');
    for (const line of [
      'lab: made hosts node1-node3: 10.77.0.11-10.77.0.13 on bridge sdtbr0 (10.77.0.10 on this machine)',
      `node1: provision: started ZooKeeper on 10.77.0.11:12203 (data ${labRoot}/zookeeper)`,
      `node1: provision: wrote the cluster key to ${labRoot}/cluster.key`,
      `node1: provision: started a sheep on 10.77.0.11:7000 (store ${labRoot}/node1)`,
      `node2: provision: started a sheep on 10.77.0.12:7000 (store ${labRoot}/node2)`,
      `node3: provision: started a sheep on 10.77.0.13:7000 (store ${labRoot}/node3)`,
      'node3: provision: formatting with 3 copies: using backend plain store',
      `node3: provision: mounted sheepfs at ${labMount}`,
      `sheepfs: mounted at ${labMount}`,
      'Next steps:',
    ]) {
      expect(lines, line).toContain(line);
    }
    expect(isMounted(labMount)).toBe(true);
    expect(await cat(`${labMount}/node/list`)).toBe(threeNodes);
    expect((await cat(`${labMount}/cluster/info`)).split('\n')[0]).toBe('Cluster status: running, auto-recovery enabled');

    // A VDI made through node1, 3 copies by default, read back through node2's NBD and sheepfs.
    const data = pattern(8 * MiB, 41);
    expect((await dog(['vdi', 'create', 'alpine', '8M', '-a', address(1)])).code).toBe(0);
    expect((await dog(['vdi', 'write', 'alpine', '-a', address(1)], { input: data })).code).toBe(0);
    const listed = (await dog(['vdi', 'list', '-r', '-a', address(3)])).out.split(' ');
    expect([listed[1], listed[8]]).toEqual(['alpine', '3']);
    const nbd = await lab(['exec', '2', 'bash', '-c', `nbdcopy nbd://127.0.0.1:${nbdPort}/alpine - | md5sum`]);
    expect(nbd.stdout.split(' ')[0]).toBe(md5(data));
    await run('bash', ['-c', `echo alpine > '${labMount}/vdi/mount'`], { timeoutMs: 30_000 });
    const viaSheepfs = await run('bash', ['-c', `md5sum < '${labMount}/volume/alpine'`], { timeoutMs: 60_000 });
    expect(viaSheepfs.stdout.split(' ')[0]).toBe(md5(data));
  });

  it('run again while it runs: says so and shows the status', async () => {
    const again = await lab();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.split('\n')[0]).toBe('lab: already running');
    expect(again.stdout).toContain(threeNodes);
  });

  it('stop: unmounts, shuts the cluster down, removes the hosts', async () => {
    const pids = [1, 2, 3].map((n) => Number(fs.readFileSync(path.join(labRoot, `node${n}`, 'sheep.pid'), 'utf8')));
    const stopped = await lab(['stop'], 60_000);
    expect({ code: stopped.code, stdout: stopped.stdout, stderr: stopped.stderr }).toEqual({
      code: 0,
      stdout: [
        `lab: unmounted sheepfs from ${labMount}`,
        'lab: asked the cluster to shut down (through node1)',
        `lab: stopped (data kept in ${labRoot}; 'npm run lab' starts it again)`,
        '',
      ].join('\n'),
      stderr: '',
    });
    expect(isMounted(labMount)).toBe(false);
    expect(ourNamespaces()).toEqual([]);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    const nothing = await lab(['stop']);
    expect(nothing.stdout).toBe('lab: nothing to stop: no hosts sdt-t*\n');
  });
});

describe("the Vagrantfile's provisioning, run inside three namespace hosts", () => {
  let plan: VagrantMachine[] = [];
  const vmDir = path.join(workDir, 'vms');
  const mountOf = (n: number) => path.join(vmDir, `sheep${n}`);
  let hosts: NetnsHosts | undefined;

  beforeAll(() => {
    ensureVagrant(); // the plan is read with ruby, which comes with it
    plan = vagrantPlan();
  }, 660_000);

  afterAll(() => {
    for (const n of [1, 2, 3]) forceUnmount(mountOf(n));
    spawnSync('bash', [path.join(repoRoot, 'scripts', 'zookeeper.sh'), 'stop', path.join(vmDir, 'zookeeper')], { timeout: 30_000 });
    hosts?.destroy();
  }, 60_000);

  /**
   * A VM's command on host n: the VM's paths and addresses become this machine's temp dirs and the
   * host's address; each host gets its own store (VMs have their own disks) and NBD port.
   */
  function onHost(n: number, inline: string): string {
    let command = inline.replaceAll('/vagrant/', `${repoRoot}/`).replaceAll(':2181', ':12204');
    plan.forEach((machine, k) => (command = command.replaceAll(machine.address, address(k + 1))));
    command = command
      .replaceAll('/etc/sheepdog/cluster.key', path.join(vmDir, 'cluster.key'))
      .replaceAll('/var/lib/sheepdog/zookeeper', path.join(vmDir, 'zookeeper'))
      .replace('--mount /sheep', `--mount ${mountOf(n)}`);
    return `${command} --store ${path.join(vmDir, `store${n}`)} --nbd 127.0.0.1:${nbdPort} --wait 120`;
  }

  it('node1, node2, node3 in turn; then cat /sheep/node/list on node1 shows three nodes', async () => {
    hosts = NetnsHosts.create({ count: 3 });
    fs.mkdirSync(vmDir);
    for (const [k, machine] of plan.entries()) {
      const n = k + 1;
      expect(machine.provision).toHaveLength(1);
      const { inline, env } = machine.provision[0]!;
      const result = await hosts.run(n, 'bash', ['-c', onHost(n, inline)], { env: { ...process.env, ...env }, timeoutMs: 300_000 });
      expect(result.code, `${machine.name}: ${result.stdout}${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`provision: mounted sheepfs at ${mountOf(n)}`);
    }
    // node1 and node2 mounted before node3 formatted: their sheepfs must follow the format.
    for (const n of [1, 2, 3]) {
      const list = await hosts.run(n, 'cat', [`${mountOf(n)}/node/list`], { timeoutMs: 30_000 });
      expect(list.stdout, `node${n}`).toBe(threeNodes);
    }
    const key = fs.readFileSync(path.join(vmDir, 'cluster.key'), 'utf8').trim();
    expect(key).toBe(plan[0]!.provision[0]!.env['SHEEPDOG_CLUSTER_KEY']);
    // Provisioning again (`vagrant provision`) changes nothing that runs.
    const again = await hosts.run(3, 'bash', ['-c', onHost(3, plan[2]!.provision[0]!.inline)], { env: { ...process.env, ...plan[2]!.provision[0]!.env } });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('provision: sheep already answers on 10.77.0.13:7000');
    expect(again.stdout).toContain('provision: already formatted: Cluster status: running, auto-recovery enabled');
  });
});
