// The Vagrant lab as far as this machine allows (no VMs here): Debian's vagrant, with the
// vagrant-libvirt plugin, validates the Vagrantfile, and the plan it holds is three Debian 12 VMs
// on a private network, each provisioned by scripts/provision-host.sh. That script itself runs,
// with the same options, inside namespace hosts in test/lab.test.ts.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './support/cluster.js';
import { ensureVagrant, vagrantPlan, withVagrantfileCopy } from './support/vagrant-plan.js';

beforeAll(() => {
  // Installed by the project's own script when missing, like every other test dependency.
  ensureVagrant();
}, 660_000);

describe('Vagrantfile', () => {
  it('vagrant validate accepts it (the libvirt block checked by vagrant-libvirt)', () => {
    const result = withVagrantfileCopy((dir) => spawnSync('vagrant', ['validate'], { cwd: dir, encoding: 'utf8', timeout: 60_000 }));
    expect({ code: result.status, stdout: result.stdout, stderr: result.stderr }).toEqual({
      code: 0,
      stdout: 'Vagrantfile validated successfully.\n',
      stderr: '',
    });
  });

  it('three Debian 12 VMs on a private network, each provisioned by scripts/provision-host.sh', () => {
    const text = fs.readFileSync(path.join(repoRoot, 'Vagrantfile'), 'utf8');
    expect(text).toContain('config.vm.box = "debian/bookworm64"');
    expect(text).toContain('config.vm.provider "libvirt"');
    expect(text).toContain('config.vm.provider "virtualbox"');
    const plan = vagrantPlan();
    expect(plan.map((m) => [m.name, m.address])).toEqual([
      ['node1', '192.168.77.11'],
      ['node2', '192.168.77.12'],
      ['node3', '192.168.77.13'],
    ]);
    const common = (address: string) =>
      `bash /vagrant/scripts/provision-host.sh --address ${address} --cluster zookeeper:192.168.77.11:2181 --key /etc/sheepdog/cluster.key --mount /sheep`;
    expect(plan.map((m) => m.provision.map((p) => p.inline))).toEqual([
      [`${common('192.168.77.11')} --zookeeper /var/lib/sheepdog/zookeeper`],
      [common('192.168.77.12')],
      [`${common('192.168.77.13')} --format 3 --nodes 3`],
    ]);
    // One cluster key for all three, one line of base64 of 32 bytes.
    const keys = new Set(plan.map((m) => m.provision[0]!.env['SHEEPDOG_CLUSTER_KEY']));
    expect(keys.size).toBe(1);
    expect(Buffer.from([...keys][0]!, 'base64')).toHaveLength(32);
  });
});
