// The three man pages, from the programs' own command tables (dog, sheep, sheepfs).
import { buildProgram } from '../fs/command.js';
import { sheepProgram } from '../sheep/options.js';
import { dogProgram } from './dog.js';
import { singleCommandPage, subcommandPage } from './man.js';

const seeAlso = (others: string[]) => ['.SH SEE ALSO', others.map((name) => `.BR ${name} (1)`).join(',\n')];

export function manPages(): Array<{ file: string; text: string }> {
  return [
    { file: 'dog.1', text: subcommandPage(dogProgram(), 'Sheepdog administrator utility', seeAlso(['sheep', 'sheepfs'])) },
    { file: 'sheep.1', text: singleCommandPage(sheepProgram(), 'Sheepdog storage daemon', seeAlso(['dog', 'sheepfs'])) },
    {
      file: 'sheepfs.1',
      text: singleCommandPage(buildProgram(async () => undefined), 'the Sheepdog cluster as files over FUSE', seeAlso(['dog', 'sheep'])),
    },
  ];
}
