// The one-way import rule of docs/design.md ("Layers"), read from the import lines of the source:
// the engine imports nothing outside src/engine, and the volume layer nothing but the engine.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const srcDir = path.resolve(import.meta.dirname, '..', 'src');

/** Every module specifier in a file: imports and re-exports, side-effect and dynamic imports. */
function importsOf(text: string): string[] {
  const patterns = [
    /^\s*(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  return patterns.flatMap((pattern) => [...text.matchAll(pattern)].map((match) => match[1]!));
}

interface Import {
  file: string;
  specifier: string;
  /** The src/ directory a relative import lands in ('' for a package or a builtin). */
  layer: string;
}

/** Imports that leave `allowed` layers; node:assert is the one builtin any layer may use. */
function outside(imports: readonly Import[], allowed: readonly string[]): Import[] {
  return imports.filter((i) =>
    i.layer === '' ? i.specifier !== 'node:assert/strict' : !allowed.includes(i.layer),
  );
}

function importsOfLayer(layer: string): Import[] {
  const dir = path.join(srcDir, layer);
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .flatMap((name) => {
      const file = path.join(dir, name);
      return importsOf(fs.readFileSync(file, 'utf8')).map((specifier) => {
        const target = specifier.startsWith('.') ? path.resolve(path.dirname(file), specifier) : '';
        const inside = target === '' ? '' : path.relative(srcDir, target).split(path.sep)[0]!;
        return { file: path.relative(srcDir, file), specifier, layer: inside };
      });
    });
}

describe('layers', () => {
  it('reads every kind of import line', () => {
    const text = [
      "import assert from 'node:assert/strict';",
      "import type { Json } from '../cluster/driver.js';",
      'import {',
      '  a,',
      "} from './a.js';",
      "export { b } from './b.js';",
      "import './side-effect.js';",
      "const lazy = await import('./lazy.js');",
      "// a comment that says import x from 'nowhere' is not an import",
    ].join('\n');
    expect(importsOf(text)).toEqual([
      'node:assert/strict',
      '../cluster/driver.js',
      './a.js',
      './b.js',
      './side-effect.js',
      './lazy.js',
    ]);
  });

  it('src/engine imports nothing outside src/engine (node:assert aside)', () => {
    const imports = importsOfLayer('engine');
    expect(imports.length).toBeGreaterThan(5); // the files were read
    expect(outside(imports, ['engine'])).toEqual([]);
  });

  it('src/volume imports only the engine and itself', () => {
    const imports = importsOfLayer('volume');
    expect(imports.length).toBeGreaterThan(5); // the files were read
    expect(outside(imports, ['engine', 'volume'])).toEqual([]);
  });
});
