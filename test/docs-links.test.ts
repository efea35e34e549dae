// Every relative link in the README and docs/ resolves inside the repository: a clone must carry
// its own design, never point at a path outside itself.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './support/cluster.js';

function markdownFiles(): string[] {
  const docs = fs.readdirSync(path.join(repoRoot, 'docs')).filter((n) => n.endsWith('.md')).map((n) => path.join('docs', n));
  return ['README.md', ...docs];
}

function relativeLinks(text: string): string[] {
  const links: string[] = [];
  for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = match[1]!;
    if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue; // a URL or an anchor
    links.push(target.split('#')[0]!);
  }
  return links;
}

describe('documentation links', () => {
  it('finds the README and the docs', () => {
    expect(markdownFiles()).toContain('docs/design.md');
  });

  for (const file of markdownFiles()) {
    it(`${file}: every relative link resolves inside the repository`, () => {
      const text = fs.readFileSync(path.join(repoRoot, file), 'utf8');
      const broken = relativeLinks(text).filter((link) => {
        const target = path.resolve(repoRoot, path.dirname(file), link);
        return !target.startsWith(repoRoot + path.sep) || !fs.existsSync(target);
      });
      expect(broken).toEqual([]);
    });
  }
});
