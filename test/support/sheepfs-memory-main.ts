// The sheepfs command over the in-memory backend, for tests: built into one file by
// buildMemorySheepfs() and run as `node FILE ARGS`, exactly like bin/sheepfs. With
// SHEEPFS_MEMORY_UNREACHABLE=1 every ping fails, as with a dead cluster.
import { oneLine, runSheepfs } from '../../src/fs/command.js';
import { MemoryBackend } from './memory-backend.js';

const unreachable = process.env.SHEEPFS_MEMORY_UNREACHABLE === '1';

runSheepfs(process.argv, () => new MemoryBackend({ unreachable })).catch((error: unknown) => {
  process.stderr.write(`sheepfs: ${oneLine(error)}\n`);
  process.exit(1);
});
