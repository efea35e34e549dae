// dog's bash completion, made from its command table: the generated script is loaded into a real
// bash and its completion function run for a few command lines, as bash would on TAB.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bashCompletion } from '../src/cli/completion.js';
import { dogProgram } from '../src/cli/dog.js';
import { run, dogBin } from './support/cluster.js';

const script = bashCompletion(dogProgram());

/** What bash offers for `line` (its last word is the one being completed; '' after a space). */
function offers(line: string): string[] {
  const words = line.split(' ');
  const array = words.map((w) => `'${w}'`).join(' ');
  const body = `${script}\nCOMP_WORDS=(${array}); COMP_CWORD=${words.length - 1}; _dog; printf '%s\\n' "\${COMPREPLY[@]}"; complete -p dog`;
  const result = spawnSync('bash', ['--norc', '--noprofile', '-c', body], { encoding: 'utf8', timeout: 10_000 });
  expect(result.stderr).toBe('');
  const lines = result.stdout.trimEnd().split('\n');
  expect(lines.pop()).toBe('complete -F _dog dog');
  return lines.filter((l) => l !== '');
}

describe('dog completion bash', () => {
  it('completes commands, subcommands, options and argument words at every depth', () => {
    expect(offers('dog ')).toEqual(['cluster', 'node', 'vdi', 'completion']);
    expect(offers('dog v')).toEqual(['vdi']);
    expect(offers('dog vdi cr')).toEqual(['create']);
    expect(offers('dog vdi object ')).toEqual(['location', 'map', 'dump-inode']);
    expect(offers('dog node st')).toEqual(['stat']);
    expect(offers('dog node log level ')).toEqual(['set', 'get', 'list']);
    expect(offers('dog node log level set d')).toEqual(['debug']);
    expect(offers('dog cluster recover ')).toEqual(['force', 'enable', 'disable']);
    expect(offers('dog cluster re')).toEqual(['recover', 'reweight']);
    expect(offers('dog vdi create --p')).toEqual(['--port', '--prealloc']);
    expect(offers('dog node stat -')).toContain('--watch');
    expect(offers('dog -')).toEqual(['--version', '-h', '--help']);
    // Past the command, its arguments: nothing to offer but the options.
    expect(offers('dog vdi list -p 7000 ')).toEqual([]);
    expect(offers('dog vdi list -p 7000 --r')).toEqual(['--raw']);
    expect(offers('dog nosuch ')).toEqual(['cluster', 'node', 'vdi', 'completion']);
  });

  it('is what `dog completion bash` prints; another shell is refused in one line', async () => {
    const printed = await run(process.execPath, [dogBin, 'completion', 'bash'], { timeoutMs: 30_000 });
    expect({ code: printed.code, stderr: printed.stderr }).toEqual({ code: 0, stderr: '' });
    expect(printed.stdout).toBe(script);
    const zsh = await run(process.execPath, [dogBin, 'completion', 'zsh'], { timeoutMs: 30_000 });
    expect({ code: zsh.code, stdout: zsh.stdout, stderr: zsh.stderr }).toEqual({ code: 64, stdout: '', stderr: "Unknown shell 'zsh': only bash is supported\n" });
  });
});
