// bin/dog's entry: dog.ts builds the command table (also read by completion and man pages)
// without running it.
import { main } from './dog.js';

await main(process.argv.slice(2));
