// One simulator thread of test/sim.test.ts: runs each seed it is handed and posts the result
// back. Bundled from the TS sources by sim-pool.ts (never a stale dist/), so a fresh clone needs
// no build for it.
import { parentPort } from 'node:worker_threads';
import { simulate } from '../../src/sim/run.js';
import { realSheep } from '../../src/sim/sheep-node.js';
import { faultProfiles } from '../../src/sim/workload.js';
import type { SimJob } from './sim-pool.js';

const port = parentPort;
if (!port) throw new Error('sim-worker runs as a worker thread (see test/support/sim-pool.ts)');
port.on('message', (job: SimJob) => {
  const profile = faultProfiles[job.profile];
  if (!profile) throw new Error(`unknown fault profile '${job.profile}'`);
  void simulate({ seed: job.seed, steps: job.steps, nodes: job.nodes, profile, convergeEvery: job.convergeEvery, factory: realSheep }).then(
    (result) => port.postMessage(result),
  );
});
