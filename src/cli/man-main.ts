// `npm run man`: writes man/dog.1, man/sheep.1 and man/sheepfs.1 (test/man.test.ts checks that
// the checked-in pages are current).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { manPages } from './man-pages.js';

const directory = process.argv[2] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'man');
fs.mkdirSync(directory, { recursive: true });
for (const { file, text } of manPages()) fs.writeFileSync(path.join(directory, file), text);
process.stdout.write(`wrote ${manPages().map((p) => p.file).join(', ')} to ${directory}\n`);
