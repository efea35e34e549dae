// npm run sim -- --seed S --steps N [--nodes K] [--minutes M] [--verbose]
// Runs one seed (or, with --minutes, successive seeds from S until the time is up) and prints one
// line per seed; a failure prints the seed, the broken invariant and the last trace lines, and
// exits 1. The same seed replays exactly: run it again to see the same trace hash.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { formatFailure, formatResult } from './report.js';
import { simulate } from './run.js';
import { faultProfiles } from './workload.js';
import { realSheep } from './sheep-node.js';

function integer(min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    }
    return value;
  };
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('sim')
    .description('seeded simulation of a whole sheep cluster in one process')
    .option('--seed <n>', 'first seed', integer(0, 2 ** 32 - 1), 1)
    .option('--steps <n>', 'workload steps per seed', integer(1, 10_000_000), 1000)
    .option('--nodes <k>', 'sheep at the start', integer(1, 32), 4)
    .option('--minutes <m>', 'soak: successive seeds until this many minutes passed', integer(0, 100_000), 0)
    .option('--faults <profile>', `fault profile: ${Object.keys(faultProfiles).join(', ')}`, 'full')
    .option('--converge-every <n>', 'steps between convergence checks', integer(1, 10_000_000), 100)
    .option('--verbose', 'print every trace line', false)
    .option('--log', "print every sheep's log lines (info and above), with --verbose's trace", false)
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const options = program.opts<{ seed: number; steps: number; nodes: number; minutes: number; faults: string; convergeEvery: number; verbose: boolean; log: boolean }>();
  const profile = faultProfiles[options.faults];
  if (!profile) throw new Error(`unknown fault profile '${options.faults}' (one of: ${Object.keys(faultProfiles).join(', ')})`);
  const deadlineMs = performance.now() + options.minutes * 60_000;
  let totalSteps = 0;
  let totalWallMs = 0;
  for (let seed = options.seed; ; seed = (seed + 1) >>> 0) {
    const result = await simulate({
      seed,
      steps: options.steps,
      nodes: options.nodes,
      profile,
      convergeEvery: options.convergeEvery,
      factory: realSheep,
      ...(options.log ? { onLog: (line: string) => process.stdout.write(`    ${line}\n`) } : {}),
      ...(options.verbose || options.log ? { onTrace: (line: string) => process.stdout.write(`  ${line}\n`) } : {}),
    });
    totalSteps += result.steps;
    totalWallMs += result.wallMs;
    process.stdout.write(`${formatResult(result)}\n`);
    if (options.verbose) process.stdout.write(`  wall ms by action: ${JSON.stringify(result.wallMsByAction)}\n`);
    if (!result.ok) {
      process.stdout.write(`${formatFailure(result)}\n`);
      return 1;
    }
    if (performance.now() >= deadlineMs) break;
  }
  process.stdout.write(`all seeds ok: ${totalSteps} steps at ${(totalSteps / (totalWallMs / 1000)).toFixed(0)} steps/s\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Commander has already printed its own one line (or the help, which exits 0).
    if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
    process.stderr.write(`sim: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
