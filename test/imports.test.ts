// The daemon's logic reaches the world only through what it is given (src/io): nothing under
// these folders imports the network, the file system, timers or processes, or reads the clock or
// the system's randomness. Nothing is allowed by exception.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
// src/rpc too: the simulator runs the handshake, whose nonces must come from the injected Random.
const folders = ['src/sheep', 'src/store', 'src/cluster', 'src/engine', 'src/rpc'];

const forbiddenModules = ['net', 'fs', 'fs/promises', 'timers', 'timers/promises', 'dgram', 'child_process'];
const forbiddenUses: Array<[string, RegExp]> = [
  ['Date.now', /\bDate\.now\b/],
  ['new Date(', /\bnew\s+Date\s*\(/],
  ['setTimeout', /\bsetTimeout\b/],
  ['setInterval', /\bsetInterval\b/],
  ['setImmediate', /\bsetImmediate\b/],
  ['Math.random', /\bMath\.random\b/],
  ['randomBytes', /\brandomBytes\b/],
  ['randomUUID', /\brandomUUID\b/],
  ['randomInt', /\brandomInt\b/],
  ['getRandomValues', /\bgetRandomValues\b/],
  ['performance.now', /\bperformance\.now\b/],
  ['process.hrtime', /\bprocess\.hrtime\b/],
];

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.(ts|mts|cts|js|mjs)$/.test(entry.name) ? [full] : [];
  });
}

/** Every module a source text imports, statically, dynamically or by require. */
function importedModules(text: string): string[] {
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"]([^'"]+)['"]/g;
  return [...text.matchAll(pattern)].map((match) => match[1]!);
}

/** What a source text must not contain: forbidden modules and uses, each with its line. */
function violations(text: string): string[] {
  const found: string[] = [];
  for (const specifier of importedModules(text)) {
    const bare = specifier.replace(/^node:/, '');
    if (forbiddenModules.includes(bare)) found.push(`imports ${specifier}`);
  }
  text.split('\n').forEach((line, index) => {
    for (const [name, pattern] of forbiddenUses) if (pattern.test(line)) found.push(`line ${index + 1}: ${name}`);
  });
  return found;
}

describe('the daemon reaches the world only through src/io', () => {
  it('finds source files in every folder it guards', () => {
    for (const folder of folders) expect(sourceFiles(path.join(root, folder)).length, folder).toBeGreaterThan(0);
  });

  it('catches each forbidden import and use', () => {
    expect(violations("import * as net from 'node:net';")).toEqual(['imports node:net']);
    expect(violations("import fs from 'fs';")).toEqual(['imports fs']);
    expect(violations("import { readFile } from 'node:fs/promises';")).toEqual(['imports node:fs/promises']);
    expect(violations("const t = await import('node:timers');")).toEqual(['imports node:timers']);
    expect(violations("import 'node:dgram';")).toEqual(['imports node:dgram']);
    expect(violations("const cp = require('child_process');")).toEqual(['imports child_process']);
    expect(violations("import path from 'node:path';\nimport { createHash } from 'node:crypto';")).toEqual([]);
    for (const [name] of forbiddenUses) {
      const use = name === 'new Date(' ? 'new Date(0)' : `${name}()`;
      expect(violations(`x;\nconst y = ${use};`)).toEqual([`line 2: ${name}`]);
    }
  });

  for (const folder of folders) {
    it(`${folder} imports no I/O module and reads no clock or randomness itself`, () => {
      const found = sourceFiles(path.join(root, folder)).flatMap((file) =>
        violations(fs.readFileSync(file, 'utf8')).map((v) => `${path.relative(root, file)}: ${v}`),
      );
      expect(found).toEqual([]);
    });
  }
});
