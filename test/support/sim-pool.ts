// Runs simulator seeds on worker threads (one seed at a time per thread, each thread takes the
// next seed when it is done), so the simulator file uses every core: vitest runs test files one
// at a time here. A seed's result does not depend on the thread it ran on.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { SimResult } from '../../src/sim/run.js';
import { bundleTestEntry } from './bundle.js';

export interface SimJob {
  seed: number;
  steps: number;
  nodes: number;
  profile: string;
  convergeEvery: number;
}

/** Bundles test/support/sim-worker.ts and what it imports from src/ into one module. */
export function buildSimWorker(): string {
  return bundleTestEntry('sim-worker.ts', 'sim-worker.mjs');
}

export function simWorkersDefault(): number {
  return os.availableParallelism();
}

/**
 * Runs every job on up to `threads` workers; results in the order of `jobs`. A thread that dies
 * (an uncaught error in the simulation) fails its seed with the error and is replaced.
 */
export async function runOnWorkers(jobs: readonly SimJob[], threads: number, onResult?: (result: SimResult) => void): Promise<SimResult[]> {
  const script = buildSimWorker();
  const results: SimResult[] = new Array(jobs.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    let worker: Worker | undefined;
    try {
      while (next < jobs.length) {
        const at = next++;
        const job = jobs[at]!;
        worker ??= new Worker(script, { execArgv: ['--enable-source-maps'] }); // failure stacks name src/ files
        const current = worker;
        const result = await new Promise<SimResult>((resolve) => {
          const settle = (result: SimResult): void => {
            current.removeAllListeners('error').removeAllListeners('exit').removeAllListeners('message');
            resolve(result);
          };
          const died = (error: unknown): void => {
            if (worker === current) worker = undefined;
            void current.terminate();
            settle(crashed(job, error));
          };
          current.once('error', died);
          current.once('exit', (code) => died(new Error(`the worker thread exited with code ${code}`)));
          current.once('message', settle);
          current.postMessage(job);
        });
        results[at] = result;
        onResult?.(result);
      }
    } finally {
      await worker?.terminate();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(threads, jobs.length)) }, lane));
  return results;
}

/** A seed whose thread died: a failed result that still names the seed and its replay. */
function crashed(job: SimJob, error: unknown): SimResult {
  return {
    seed: job.seed,
    profile: job.profile,
    convergeEvery: job.convergeEvery,
    steps: job.steps,
    ok: false,
    failure: {
      step: 0,
      invariant: 'no crash of the simulation',
      message: error instanceof Error ? (error.stack ?? error.message) : String(error),
      trace: [],
    },
    traceHash: '',
    simulatedMs: 0,
    events: 0,
    wallMs: 0,
    convergences: 0,
    leakedObjects: 0,
    staleCopies: 0,
    wallMsByAction: {},
  };
}
