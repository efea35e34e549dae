// Every program reports the release of package.json.
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { packageVersion } from '../src/engine/version.js';

it('src/engine/version.ts says what package.json says', () => {
  const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
  expect(packageVersion).toBe(pkg.version);
});

it('dog, sheep and sheepfs print it for --version, exit 0', async () => {
  const { run, dogBin, sheepBin } = await import('./support/cluster.js');
  const sheepfsBin = path.resolve(import.meta.dirname, '..', 'bin', 'sheepfs');
  const answer = async (bin: string, flag: string) => {
    const result = await run(process.execPath, [bin, flag], { timeoutMs: 30_000 });
    return { code: result.code, stdout: result.stdout, stderr: result.stderr };
  };
  expect(await answer(dogBin, '--version')).toEqual({ code: 0, stdout: `Sheepdog administrator utility (version ${packageVersion})\n`, stderr: '' });
  const sheep = `Sheepdog daemon version ${packageVersion}\n\nSupported features:\n\tCluster drivers: zookeeper local\n\tMiscellaneous: nbd\n`;
  expect(await answer(sheepBin, '--version')).toEqual({ code: 0, stdout: sheep, stderr: '' });
  expect(await answer(sheepBin, '-v')).toEqual({ code: 0, stdout: sheep, stderr: '' });
  expect(await answer(sheepfsBin, '--version')).toEqual({ code: 0, stdout: `sheepfs version ${packageVersion}\n`, stderr: '' });
}, 60_000);
