// Man pages (roff) made from the programs' own help text: the usage lines, descriptions and
// options commander shows for --help. Pure: a program in, the page out; man-main.ts writes them.
import type { Command, Help } from 'commander';
import { packageVersion } from '../engine/version.js';
import { commandTree } from './command-tree.js';

/** Text as roff: backslashes and dashes escaped, no line starting with a control character. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join('\n');
}

function optionLines(help: Help, command: Command, skip: ReadonlySet<string>): string[] {
  return help
    .visibleOptions(command)
    .filter((option) => !skip.has(option.flags))
    .flatMap((option) => ['.TP', `.B ${roff(help.optionTerm(option))}`, roff(help.optionDescription(option))]);
}

function header(name: string, summary: string): string[] {
  return [`.TH ${name.toUpperCase()} 1 "" "sheepdog-ts ${packageVersion}" "User Commands"`, '.SH NAME', `${name} \\- ${roff(summary)}`];
}

/** A program of one command (sheep, sheepfs): synopsis, description, options. */
export function singleCommandPage(program: Command, summary: string, extra: readonly string[] = []): string {
  const help = program.createHelp();
  const lines = [
    ...header(program.name(), summary),
    '.SH SYNOPSIS',
    `.B ${program.name()}`,
    roff(help.commandUsage(program).replace(/^\S+ /, '')),
    '.SH DESCRIPTION',
    roff(program.description()),
    '.SH OPTIONS',
    ...optionLines(help, program, new Set()),
    ...extra,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * A program of subcommands (dog): the options every command takes once, then each command with
 * its usage, description and own options, in the order of the command table.
 */
export function subcommandPage(program: Command, summary: string, extra: readonly string[] = []): string {
  const help = program.createHelp();
  const leaves = commandTree(program).filter((node) => node.path.length > 0 && node.subcommands.length === 0);
  // Commands with options beyond --help (not `completion`) share the global ones.
  const flagSets = leaves.map((node) => new Set(help.visibleOptions(node.command).map((o) => o.flags))).filter((set) => set.size > 1);
  const common = new Set([...(flagSets[0] ?? [])].filter((flags) => flagSets.every((set) => set.has(flags))));
  const first = leaves.find((node) => help.visibleOptions(node.command).length > 1)?.command;
  const commonOptions = first === undefined ? [] : help.visibleOptions(first).filter((o) => common.has(o.flags));
  const lines = [
    ...header(program.name(), summary),
    '.SH SYNOPSIS',
    `.B ${program.name()}`,
    '\\fIcommand\\fR \\fIsubcommand\\fR [\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    roff(program.description()),
    '.SH COMMON OPTIONS',
    ...commonOptions.flatMap((option) => ['.TP', `.B ${roff(help.optionTerm(option))}`, roff(help.optionDescription(option))]),
    '.SH COMMANDS',
  ];
  for (const node of leaves) {
    lines.push('.TP', `.B ${roff(help.commandUsage(node.command))}`, roff(node.command.description()));
    const own = optionLines(help, node.command, common);
    if (own.length > 0) lines.push('.RS', ...own, '.RE');
  }
  lines.push(...extra);
  return `${lines.join('\n')}\n`;
}
