// dog's usage screens in the original's shape, and --help on every command of the table (no
// sheep needed: nothing here reaches one).
import { describe, expect, it } from 'vitest';
import { commandTree } from '../src/cli/command-tree.js';
import { dogProgram } from '../src/cli/dog.js';
import { programUsage } from '../src/cli/usage.js';
import { packageVersion } from '../src/engine/version.js';
import { dogBin, run } from './support/cluster.js';

async function dog(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const result = await run(process.execPath, [dogBin, ...args], { timeoutMs: 30_000 });
  return { code: result.code, out: result.stdout, err: result.stderr };
}

describe('dog usage', () => {
  it('lists every command and subcommand as the original, for dog, dog --help, dog help', async () => {
    const usage = programUsage(dogProgram());
    expect(usage.split('\n').slice(0, 5)).toEqual([
      `Sheepdog administrator utility (version ${packageVersion})`,
      'Usage: dog <command> <subcommand> [options]',
      '',
      'Available commands:',
      '  cluster info            show cluster information',
    ]);
    expect(usage).toContain('\n  vdi create              create an image\n');
    expect(usage).toContain('\n  node stat               show stat information about the node\n');
    expect(usage.endsWith("\n\nFor more information, run 'dog <command> <subcommand> --help'.\n")).toBe(true);
    for (const args of [[], ['--help'], ['-h'], ['help']]) expect(await dog(args)).toEqual({ code: 0, out: usage, err: '' });
  });

  it('refuses an unknown command or subcommand as the original, exit 64', async () => {
    expect(await dog(['foo'])).toEqual({ code: 64, out: '', err: "Invalid command 'foo'\nTry 'dog --help' for more information.\n" });
    const list = 'Available node commands:\n  node list\n  node info\n  node recovery\n  node md\n  node vnodes\n  node kill\n  node scrub\n  node stat\n  node log\n';
    expect(await dog(['node'])).toEqual({ code: 64, out: '', err: list });
    expect(await dog(['node', 'foo'])).toEqual({ code: 64, out: '', err: `Invalid command 'node foo'\n${list}` });
    expect(await dog(['node', '--help'])).toEqual({ code: 0, out: list, err: '' });
    expect(await dog(['vdi', 'create', '--bogus'])).toEqual({ code: 64, out: '', err: "unknown option '--bogus'\n" });
    const snapshots = 'Available cluster snapshot commands:\n  cluster snapshot save\n  cluster snapshot list\n  cluster snapshot load\n  cluster snapshot show\n';
    expect(await dog(['cluster', 'snapshot'])).toEqual({ code: 64, out: '', err: snapshots });
    expect(await dog(['cluster', 'snapshot', 'foo'])).toEqual({ code: 64, out: '', err: `Invalid command 'cluster snapshot foo'\n${snapshots}` });
  });

  it('says why it cannot reach a sheep, as the original', async () => {
    // Nothing listens on 8699 (this file's port): the connection is refused.
    expect(await dog(['node', 'list', '-p', '8699'])).toEqual({ code: 1, out: '', err: 'failed to connect to 127.0.0.1:8699: Connection refused\n' });
    expect(await dog(['node', 'list', '-p', '0'])).toEqual({ code: 64, out: '', err: "Invalid port number '0'\n" });
    expect(await dog(['node', 'list', '-p', 'x'])).toEqual({ code: 64, out: '', err: "Invalid port number 'x'\n" });
  });

  it('has --help on every command, exit 0, its usage first', async () => {
    const leaves = commandTree(dogProgram()).filter((node) => node.path.length > 0 && node.subcommands.length === 0);
    expect(leaves.length).toBeGreaterThan(25);
    for (const node of leaves) {
      const help = await dog([...node.path, '--help']);
      expect({ path: node.path, code: help.code, err: help.err }).toEqual({ path: node.path, code: 0, err: '' });
      expect(help.out.startsWith(`Usage: dog ${node.path.join(' ')} `), help.out).toBe(true);
      expect(help.out).toContain(`\n${node.command.description()}\n`);
    }
  }, 120_000);
});
