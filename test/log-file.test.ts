// The sheep's log destination (src/io/log-file.ts) on a device that is always full: pino's own
// destination threw ENOSPC as an uncaught exception there and its fatal path retried forever.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { openLogFile } from '../src/io/log-file.js';

describe('log file', () => {
  it('drops and counts lines on a full device, never throws, and flushes without waiting', async () => {
    const logFile = openLogFile('/dev/full', 10);
    const log = pino({ level: 'info' }, logFile);
    for (let k = 0; k < 1000; k++) log.info({ k }, 'a line for a full disk');
    await new Promise<void>((resolve) => logFile.flush(() => resolve()));
    logFile.flushSync();
    expect(logFile.droppedLines).toBeGreaterThan(0);
    // Retries (every 10 ms here) go on failing quietly.
    await new Promise((resolve) => setTimeout(resolve, 50));
    log.fatal({}, 'still not an exception');
    logFile.flushSync();
  });

  it('writes every line, in order, to a file that takes them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-log-'));
    try {
      const file = path.join(dir, 'sheep.log');
      const logFile = openLogFile(file);
      const log = pino({ level: 'info' }, logFile);
      for (let k = 0; k < 500; k++) log.info({ k }, 'line');
      await new Promise<void>((resolve) => logFile.flush(() => resolve()));
      const ks = fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { k: number }).k);
      expect(ks).toEqual(Array.from({ length: 500 }, (_, k) => k));
      expect(logFile.droppedLines).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
