// `dog completion bash`: a bash completion script made from dog's command table at run time, so
// it completes exactly the commands and options this dog has.
import type { Command } from 'commander';
import { commandTree, completeArgumentWith, type CommandNode } from './command-tree.js';
import { action, DogFailure, exitUsage, out } from './common.js';

/** A word list as one single-quoted bash word (names and flags hold no quote). */
function quoted(words: readonly string[]): string {
  const text = words.join(' ');
  if (text.includes("'")) throw new Error(`a dog command word holds a quote: ${text}`);
  return `'${text}'`;
}

function caseArms(nodes: readonly CommandNode[], words: (node: CommandNode) => string[]): string {
  return nodes
    .map((node) => ({ key: node.path.join(' '), words: words(node) }))
    .filter((arm) => arm.words.length > 0)
    .map((arm) => `    ${quoted([arm.key])}) echo ${quoted(arm.words)} ;;`)
    .join('\n');
}

export function bashCompletion(program: Command): string {
  const nodes = commandTree(program);
  const name = program.name();
  const paths = nodes.filter((n) => n.path.length > 0).map((n) => quoted([n.path.join(' ')]));
  return `# bash completion for ${name}, made from its command table: ${name} completion bash
_${name}_words() {
  case "$1" in
${caseArms(nodes, (n) => [...n.subcommands, ...n.words])}
  esac
}
_${name}_flags() {
  case "$1" in
${caseArms(nodes, (n) => n.flags)}
  esac
}
_${name}_is_command() {
  case "$1" in
    ${paths.join('|')}) return 0 ;;
  esac
  return 1
}
_${name}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" next i
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="\${path:+$path }\${COMP_WORDS[i]}"
    if _${name}_is_command "$next"; then path="$next"; fi
  done
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_${name}_flags "$path")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_${name}_words "$path")" -- "$cur"))
  fi
}
complete -F _${name} ${name}
`;
}

/** Adds `completion bash` to the program; the script covers the command itself too. */
export function addCompletionCommand(program: Command): void {
  const command = program
    .command('completion')
    .description('print a bash completion script: source <(dog completion bash)')
    .argument('<SHELL>', 'bash')
    .action(action(async (shell: string) => {
      if (shell !== 'bash') throw new DogFailure(`Unknown shell '${shell}': only bash is supported`, exitUsage);
      out(bashCompletion(program));
    }));
  completeArgumentWith(command, ['bash']);
}
