// The whole-cluster simulator in CI: real sheep in one process on simulated time, network,
// disks and driver, a seeded workload, the invariants after every step (src/sim/, see
// docs/simulator.md). SIM_SEEDS, SIM_STEPS and SIM_CONVERGE_EVERY scale it (the defaults fit
// the CI budget).
import { describe, expect, test } from 'vitest';
import { formatFailure, formatResult } from '../src/sim/report.js';
import { simulate, type SimResult } from '../src/sim/run.js';
import { realSheep } from '../src/sim/sheep-node.js';
import { faultProfiles } from '../src/sim/workload.js';

const seeds = Number(process.env.SIM_SEEDS ?? 100);
const steps = Number(process.env.SIM_STEPS ?? 100);
const convergeEvery = Number(process.env.SIM_CONVERGE_EVERY ?? 50);
const firstSeed = Number(process.env.SIM_FIRST_SEED ?? 1);
const profile = faultProfiles[process.env.SIM_FAULTS ?? 'ci']!;

function run(seed: number, stepCount: number, nodes = 4): Promise<SimResult> {
  return simulate({ seed, steps: stepCount, nodes, profile, convergeEvery, factory: realSheep });
}

describe('simulator', () => {
  test(`${seeds} seeds × ${steps} steps hold every invariant (faults: ${profile.name})`, async () => {
    let totalSteps = 0;
    let totalWallMs = 0;
    let leaked = 0;
    let stale = 0;
    const failures: string[] = [];
    for (let seed = firstSeed; seed < firstSeed + seeds; seed++) {
      const result = await run(seed, steps);
      totalSteps += result.steps;
      totalWallMs += result.wallMs;
      leaked += result.leakedObjects;
      stale += result.staleCopies;
      if (!result.ok) failures.push(`${formatResult(result)}\n${formatFailure(result)}`);
    }
    console.log(
      `simulator: seeds ${firstSeed}..${firstSeed + seeds - 1}, ${totalSteps} steps in ${(totalWallMs / 1000).toFixed(1)} s ` +
        `(${(totalSteps / (totalWallMs / 1000)).toFixed(1)} steps/s), ${leaked} leaked objects and ${stale} stale copies counted`,
    );
    expect(failures, failures.join('\n\n')).toEqual([]);
  }, 30 * 60_000);

  test('the same seed replays exactly; another seed does not', async () => {
    const first = await run(7, 30);
    const again = await run(7, 30);
    const other = await run(8, 30);
    expect(again.traceHash).toBe(first.traceHash);
    expect(again.events).toBe(first.events);
    expect(again.simulatedMs).toBe(first.simulatedMs);
    expect(other.traceHash).not.toBe(first.traceHash);
  }, 10 * 60_000);
});
