// Builds a test entry point and what it imports from src/ into one ES module under dist-test/, so
// a test can run it as a process or a worker from the sources (never a stale dist/). Packages
// stay external: the file is written inside the repository, where node finds node_modules.
import path from 'node:path';
import { buildSync } from 'esbuild';
import { repoRoot } from './cluster.js';

/** Bundles test/support/`entry` into dist-test/`output`; returns the output's path. */
export function bundleTestEntry(entry: string, output: string): string {
  const outfile = path.join(repoRoot, 'dist-test', output);
  buildSync({
    entryPoints: [path.join(repoRoot, 'test', 'support', entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'error',
  });
  return outfile;
}
