// dog's own usage screens, as the original's (dog/dog.c usage() and setup_commands()): the list of
// every command and subcommand, and the refusal of a command or subcommand that does not exist.
// commander prints the help of each command (`dog vdi create --help`).
import type { Command } from 'commander';
import { packageVersion } from '../engine/version.js';
import { exitUsage } from './common.js';

const helpWords = new Set(['help', '--help', '-h']);

function pairs(command: Command, prefix: string): string[] {
  return command.commands.map((sub) => `  ${`${prefix}${sub.name()}`.padEnd(24)}${sub.description()}\n`);
}

/** `dog`, `dog --help`: every `command subcommand` with its description. */
export function programUsage(program: Command): string {
  const lines = program.commands.flatMap((command) =>
    command.commands.length > 0 ? pairs(command, `${command.name()} `) : pairs({ commands: [command] } as unknown as Command, ''),
  );
  return (
    `Sheepdog administrator utility (version ${packageVersion})\nUsage: ${program.name()} <command> <subcommand> [options]\n\n` +
    `Available commands:\n${lines.join('')}\nFor more information, run '${program.name()} <command> <subcommand> --help'.\n`
  );
}

export interface UsageOutcome {
  stdout: string;
  stderr: string;
  code: number;
}

/**
 * What dog answers before commander parses, or undefined to let it parse: no command or a help
 * word (the list, exit 0), an unknown command, a command group without or with an unknown
 * subcommand (the original's refusal and the group's list, exit 64).
 */
export function usageOutcome(program: Command, argv: readonly string[]): UsageOutcome | undefined {
  const [first] = argv;
  if (first === undefined || helpWords.has(first)) return { stdout: programUsage(program), stderr: '', code: 0 };
  if (first.startsWith('-')) return undefined;
  const command = program.commands.find((c) => c.name() === first);
  if (command === undefined) {
    return { stdout: '', stderr: `Invalid command '${first}'\nTry '${program.name()} --help' for more information.\n`, code: exitUsage };
  }
  return groupOutcome(command, [first], argv.slice(1));
}

/** A command group (`node`, `cluster snapshot`) and the words after it. */
function groupOutcome(command: Command, path: readonly string[], rest: readonly string[]): UsageOutcome | undefined {
  if (command.commands.length === 0) return undefined;
  const [second] = rest;
  const name = path.join(' ');
  const list = `Available ${name} commands:\n${command.commands.map((sub) => `  ${name} ${sub.name()}\n`).join('')}`;
  if (second !== undefined && helpWords.has(second)) return { stdout: list, stderr: '', code: 0 };
  if (second === undefined) return { stdout: '', stderr: list, code: exitUsage };
  const sub = command.commands.find((c) => c.name() === second);
  if (sub) return groupOutcome(sub, [...path, second], rest.slice(1));
  return { stdout: '', stderr: `Invalid command '${name} ${second}'\n${list}`, code: exitUsage };
}
