// bin/dog runs the one-file build (scripts/bundle-dog.mjs) only while it is newer than the modules
// tsc wrote: a `tsc` without the bundling step must never leave dog running stale code.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dog-bundle-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A copy of bin/dog beside stand-ins for the two builds, which say which one ran. */
function layout(): { cli: string; run: () => string } {
  fs.mkdirSync(path.join(tmp, 'bin'), { recursive: true });
  const cli = path.join(tmp, 'dist', 'cli');
  fs.mkdirSync(cli, { recursive: true });
  fs.copyFileSync(path.resolve(import.meta.dirname, '..', 'bin', 'dog'), path.join(tmp, 'bin', 'dog'));
  fs.writeFileSync(path.join(cli, 'dog-main.js'), "console.log('modules');\n");
  fs.writeFileSync(path.join(tmp, 'package.json'), '{"type":"module"}\n');
  const run = () => spawnSync(process.execPath, [path.join(tmp, 'bin', 'dog')], { encoding: 'utf8' }).stdout.trim();
  return { cli, run };
}

it('uses the bundle only while it is newer than dog-main.js, and runs the modules without one', () => {
  const { cli, run } = layout();
  expect(run()).toBe('modules');
  const bundle = path.join(cli, 'dog.bundle.mjs');
  fs.writeFileSync(bundle, "console.log('bundle');\n");
  const now = Date.now() / 1000;
  fs.utimesSync(path.join(cli, 'dog-main.js'), now - 10, now - 10);
  fs.utimesSync(bundle, now, now);
  expect(run()).toBe('bundle');
  // tsc ran again, the bundling step did not.
  fs.utimesSync(path.join(cli, 'dog-main.js'), now + 10, now + 10);
  expect(run()).toBe('modules');
});
