// What `vagrant up` would run, read from the Vagrantfile without Vagrant: per machine, its private
// address and its shell provisioners (test/support/vagrant-plan.rb loads the file with a stand-in
// for Vagrant). The Vagrantfile is loaded from a copy in a temp dir, so the cluster key it makes
// beside Vagrant's state lands there, not in the checkout.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './cluster.js';

export interface VagrantMachine {
  name: string;
  address: string;
  provision: Array<{ inline: string; env: Record<string, string> }>;
}

/** Runs `fn` on a copy of the Vagrantfile in a fresh temp dir, removed afterwards. */
export function withVagrantfileCopy<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sheep-vagrant-'));
  try {
    fs.copyFileSync(path.join(repoRoot, 'Vagrantfile'), path.join(dir, 'Vagrantfile'));
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Debian's vagrant and vagrant-libvirt (and with them ruby), through the project's own script. */
export function ensureVagrant(): void {
  const installed = spawnSync('bash', [path.join(repoRoot, 'scripts', 'ensure-deps.sh'), '--no-build', 'vagrant', 'vagrant-libvirt'], {
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (installed.status !== 0) throw new Error(`ensure-deps.sh vagrant vagrant-libvirt failed: ${installed.stderr}`);
}

export function vagrantPlan(): VagrantMachine[] {
  const recorder = path.join(repoRoot, 'test', 'support', 'vagrant-plan.rb');
  const text = withVagrantfileCopy((dir) =>
    execFileSync('ruby', [recorder, path.join(dir, 'Vagrantfile')], { encoding: 'utf8', timeout: 30_000 }),
  );
  const plan = JSON.parse(text) as Record<string, Omit<VagrantMachine, 'name'>>;
  return Object.entries(plan).map(([name, machine]) => ({ name, ...machine }));
}
