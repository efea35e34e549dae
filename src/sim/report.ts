// One line per run, and the failure report: the seed, the invariant, the last events, the replay.
import type { SimResult } from './run.js';

export function formatResult(result: SimResult): string {
  const rate = result.steps / (result.wallMs / 1000);
  return (
    `seed ${result.seed}: ${result.ok ? 'ok' : 'FAILED'} ${result.steps} steps, ` +
    `${(result.simulatedMs / 1000).toFixed(1)} s simulated, ${result.events} events, ` +
    `${(result.wallMs / 1000).toFixed(2)} s wall (${rate.toFixed(0)} steps/s), ${result.leakedObjects} leaked objects, ${result.staleCopies} stale copies, trace ${result.traceHash}`
  );
}

export function formatFailure(result: SimResult): string {
  const failure = result.failure;
  if (!failure) return '';
  return [
    `seed ${result.seed} broke "${failure.invariant}" at step ${failure.step}:`,
    `  ${failure.message.split('\n').join('\n  ')}`,
    'last events:',
    ...failure.trace.map((line) => `  ${line}`),
    `replay: npm run sim -- --seed ${result.seed} --steps ${result.steps} --faults ${result.profile} --converge-every ${result.convergeEvery}`,
  ].join('\n');
}
