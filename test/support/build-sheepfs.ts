// Builds the sheepfs command over the in-memory backend into one ES module, so a test can run it
// as a process the way bin/sheepfs runs (the double stays out of src/ and dist/). Packages stay
// external: the file is written inside the repository, where node finds node_modules.
import path from 'node:path';
import { buildSync } from 'esbuild';
import { repoRoot } from './cluster.js';

export const memorySheepfsPath = path.join(repoRoot, 'dist-test', 'sheepfs-memory.mjs');

export function buildMemorySheepfs(): string {
  buildSync({
    entryPoints: [path.join(repoRoot, 'test', 'support', 'sheepfs-memory-main.ts')],
    outfile: memorySheepfsPath,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'error',
  });
  return memorySheepfsPath;
}
