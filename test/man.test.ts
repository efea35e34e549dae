// The man pages in man/ are the ones the programs' help text makes now (npm run man), and groff
// reads them without a warning.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { manPages } from '../src/cli/man-pages.js';

const manDir = path.resolve(import.meta.dirname, '..', 'man');

describe('man pages', () => {
  it('are up to date with the help text (run `npm run man` after changing options)', () => {
    for (const { file, text } of manPages()) expect(fs.readFileSync(path.join(manDir, file), 'utf8'), file).toBe(text);
    expect(fs.readdirSync(manDir).sort()).toEqual(['dog.1', 'sheep.1', 'sheepfs.1']);
  });

  it('hold every command and option of their program', () => {
    const [dog, sheep, sheepfs] = manPages().map((p) => p.text);
    for (const usage of ['dog vdi create [options] <NAME> [SIZE]', 'dog node stat [options]', 'dog vdi track [options] <NAME>', 'dog completion [options] <SHELL>']) {
      expect(dog).toContain(`.B ${usage.replace(/-/g, '\\-')}`);
    }
    expect(dog).toContain('.SH COMMON OPTIONS');
    expect(dog).toContain('\\-w, \\-\\-watch');
    expect(sheep).toContain('\\-g, \\-\\-gateway');
    expect(sheepfs).toContain('\\-o, \\-\\-options <fuse\\-options>');
  });

  it('render with groff without warnings', () => {
    for (const file of ['dog.1', 'sheep.1', 'sheepfs.1']) {
      const result = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', path.join(manDir, file)], { encoding: 'utf8', timeout: 30_000 });
      expect({ file, status: result.status, stderr: result.stderr }).toEqual({ file, status: 0, stderr: '' });
    }
  });
});
