// The sheepfs program (bin/sheepfs): the command over the cluster backend.
import { createBackend } from './cluster-backend.js';
import { oneLine, runSheepfs } from './command.js';

runSheepfs(process.argv, createBackend).catch((error: unknown) => {
  process.stderr.write(`sheepfs: ${oneLine(error)}\n`);
  process.exit(1);
});
