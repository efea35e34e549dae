// dog's command table read back from commander: every command path with its subcommands, options
// and help text. Completion (./completion.ts) and man pages (./man.ts) are both made from it, so
// neither can drift from what dog accepts.
import type { Command } from 'commander';

export interface CommandNode {
  /** Names from the program down, without the program's own: ['vdi', 'create']. */
  path: string[];
  command: Command;
  subcommands: string[];
  /** Every flag, short and long: ['-a', '--address', ...]. */
  flags: string[];
  /** Words the first argument may take (completion only), when a command declares them. */
  words: string[];
}

const argumentWords = new WeakMap<Command, readonly string[]>();

/** Declares the words a command's first argument may be, for completion. */
export function completeArgumentWith(command: Command, words: readonly string[]): Command {
  argumentWords.set(command, words);
  return command;
}

function visible(command: Command): Command[] {
  // commander's implicit `help` command is not in `commands`; hidden ones have _hidden set.
  return command.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
}

/** Every command of the program, parents before children, in the order they were added. */
export function commandTree(program: Command): CommandNode[] {
  const nodes: CommandNode[] = [];
  const walk = (command: Command, path: string[]) => {
    const help = command.createHelp();
    const flags = help.visibleOptions(command).flatMap((o) => [o.short, o.long].filter((f): f is string => f !== undefined));
    const children = visible(command);
    nodes.push({ path, command, subcommands: children.map((c) => c.name()), flags, words: [...(argumentWords.get(command) ?? [])] });
    for (const child of children) walk(child, [...path, child.name()]);
  };
  walk(program, []);
  return nodes;
}
