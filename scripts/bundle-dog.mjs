#!/usr/bin/env node
// Second half of `npm run build`: bundles dog into one file, dist/cli/dog.bundle.mjs. Node spends
// most of a short `dog` command resolving and compiling its ~100 modules one by one; one file
// takes `dog node list` from about 0.15 s to 0.11 s (Node itself starts in 0.08 s).
// bin/dog runs the bundle only while it is newer than dist/cli/dog-main.js (tsc rewrites every
// output), so a plain `tsc` never leaves dog running stale code. Without esbuild (installed
// without dev dependencies) there is no bundle and dog runs the modules.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outfile = path.join(repo, 'dist', 'cli', 'dog.bundle.mjs');
rmSync(outfile, { force: true });
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.error('build: esbuild is not installed; dog runs unbundled');
  process.exit(0);
}
await esbuild.build({
  entryPoints: [path.join(repo, 'dist', 'cli', 'dog-main.js')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
  // Bundled CommonJS packages (commander, msgpackr) call require: give the ES module one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
});
