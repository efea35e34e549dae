// Every program reports the release of package.json.
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { packageVersion } from '../src/engine/version.js';

it('src/engine/version.ts says what package.json says', () => {
  const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
  expect(packageVersion).toBe(pkg.version);
});
