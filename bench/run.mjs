#!/usr/bin/env node
// Runs every bench/*.bench.mjs, one after another, each in its own Node process (a benchmark that
// starts daemons must not share a process or ports with the next one). Add a benchmark by dropping
// a NAME.bench.mjs file here: it prints its own table and exits non-zero only when it could not run.
// Usage: node bench/run.mjs [FILTER...]   (runs only the files whose name contains a FILTER)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadText, printTable, targetCells } from './lib.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(benchDir)
  .filter((name) => name.endsWith('.bench.mjs'))
  .filter((name) => filters.length === 0 || filters.some((filter) => name.includes(filter)))
  .sort();

if (files.length === 0) {
  console.error(`bench: no bench/*.bench.mjs${filters.length ? ` matching ${filters.join(' ')}` : ''}`);
  process.exit(1);
}

// Every benchmark appends its rows of the targets table here (lib.mjs recordTargets).
const resultsDir = mkdtempSync(path.join(os.tmpdir(), 'bench-results-'));
const resultsFile = path.join(resultsDir, 'targets.jsonl');
const loads = [loadText()];

let current;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    current?.kill(signal); // the benchmark cleans up its own daemons
  });
}

const results = [];
for (const name of files) {
  console.log(`\n=== ${name}`);
  const started = Date.now();
  const code = await new Promise((resolve) => {
    current = spawn(process.execPath, [path.join(benchDir, name)], { stdio: 'inherit', env: { ...process.env, BENCH_RESULTS: resultsFile } });
    current.on('error', (error) => {
      console.error(`bench: cannot run ${name}: ${error.message}`);
      resolve(1);
    });
    current.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
  });
  current = undefined;
  results.push({ name, code, seconds: (Date.now() - started) / 1000 });
}

loads.push(loadText());

const targets = existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line)) : [];
rmSync(resultsDir, { recursive: true, force: true });
if (targets.length > 0) {
  console.log('\n=== targets (each figure beside a baseline measured in the same run; medians)');
  printTable(['workload', 'figure', 'baseline', 'ratio', 'target', 'met'], targets.map(targetCells), (column) => column >= 1 && column <= 3);
  console.log(`load average (1, 5, 15 min): ${loads[0]} at the start, ${loads[1]} at the end; ${os.cpus().length} CPUs`);
}

console.log('\n=== bench summary');
for (const { name, code, seconds } of results) {
  console.log(`${code === 0 ? 'ok    ' : `FAILED`} ${name} (${seconds.toFixed(0)} s${code === 0 ? '' : `, exit ${code}`})`);
}
process.exit(results.some((result) => result.code !== 0) ? 1 : 0);
