// The backup stream format (src/cli/backup-stream.ts): what is written is read back exactly, and
// a stream cut anywhere, altered anywhere, or foreign is refused with the reason.
import { describe, expect, it } from 'vitest';
import { BackupParser, BackupWriter, type BackupRecord } from '../src/cli/backup-stream.js';
import { changedRuns } from '../src/cli/backup.js';
import { progressLine } from '../src/cli/progress.js';

const objectBytes = 1 << 20;

async function sample(): Promise<{ bytes: Buffer; records: Array<{ record: BackupRecord; data: Buffer }> }> {
  const parts: Buffer[] = [];
  const writer = new BackupWriter(async (b) => void parts.push(Buffer.from(b)));
  const records: Array<{ record: BackupRecord; data: Buffer }> = [
    { record: { index: 0, kind: 'data', offset: 512, length: 1024 }, data: Buffer.alloc(1024, 7) },
    { record: { index: 0, kind: 'data', offset: 8192, length: 512 }, data: Buffer.alloc(512, 9) },
    { record: { index: 2, kind: 'discard', offset: 0, length: 0 }, data: Buffer.alloc(0) },
    { record: { index: 3, kind: 'data', offset: 0, length: 4096 }, data: Buffer.alloc(4096, 1) },
  ];
  await writer.header({ full: false, vdiSizeBytes: 4 * objectBytes, objectSizeBytes: objectBytes });
  for (const { record, data } of records) await writer.record(record, record.kind === 'data' ? data : undefined);
  await writer.end();
  return { bytes: Buffer.concat(parts), records };
}

async function parse(bytes: Buffer, chunk = 100): Promise<{ records: Array<{ record: BackupRecord; data: Buffer }>; summary: ReturnType<BackupParser['finish']> }> {
  const records: Array<{ record: BackupRecord; data: Buffer }> = [];
  const parser = new BackupParser((record, data) => void records.push({ record, data: Buffer.from(data) }));
  for (let at = 0; at < bytes.length; at += chunk) await parser.feed(bytes.subarray(at, at + chunk));
  return { records, summary: parser.finish() };
}

describe('backup stream', () => {
  it('reads back what was written, in any chunking', async () => {
    const { bytes, records } = await sample();
    for (const chunk of [1, 7, 100, bytes.length]) {
      const parsed = await parse(bytes, chunk);
      expect(parsed.records).toEqual(records);
      expect(parsed.summary).toEqual({ header: { full: false, vdiSizeBytes: 4 * objectBytes, objectSizeBytes: objectBytes }, records: 4, dataBytes: 5632, streamBytes: bytes.length });
    }
  });

  it('refuses a stream cut at any length', async () => {
    const { bytes } = await sample();
    for (let length = 0; length < bytes.length; length++) {
      await expect(parse(bytes.subarray(0, length)), `cut at ${length}`).rejects.toThrow(/^The backup stream is refused, nothing was changed: it is truncated: it ends after \d+ bytes, inside its (header|records|trailer)$/);
    }
  });

  it('refuses a stream with any byte changed, and bytes after its end', async () => {
    const { bytes } = await sample();
    for (let at = 0; at < bytes.length; at++) {
      const bad = Buffer.from(bytes);
      bad[at] = bad[at]! ^ 0x40;
      await expect(parse(bad), `byte ${at}`).rejects.toThrow(/^The backup stream is refused, nothing was changed: /);
    }
    await expect(parse(Buffer.concat([bytes, Buffer.from('x')]))).rejects.toThrow('1 bytes follow the end of the stream');
  });

  it('names a foreign stream and an unknown version', async () => {
    await expect(parse(Buffer.from('GIF89a and the rest of a picture'))).rejects.toThrow(
      'The backup stream is refused, nothing was changed: it is not a dog vdi backup stream (no SDOGBKUP magic)',
    );
    const { bytes } = await sample();
    const v2 = Buffer.from(bytes);
    v2.writeUInt32LE(2, 8);
    await expect(parse(v2)).rejects.toThrow('format version 2 is not one this dog reads (1)');
  });

  it('finds changed sector runs, merging near ones', () => {
    const base = Buffer.alloc(64 * 1024);
    const data = Buffer.from(base);
    data[100] = 1; // sector 0
    data[3000] = 1; // sector 5: within 4 KiB of sector 0, merged
    data[40000] = 1; // sector 78: apart
    expect(changedRuns(data, base)).toEqual([{ offset: 0, length: 3072 }, { offset: 39936, length: 512 }]);
    expect(changedRuns(base, undefined)).toEqual([]);
    expect(changedRuns(data, data)).toEqual([]);
  });

  it('words progress as bytes, rate and ETA', () => {
    expect(progressLine(16 * 1024 * 1024, 64 * 1024 * 1024, 2000)).toBe('16 MB / 64 MB  8.0 MB/s  ETA 0:06');
    expect(progressLine(0, 64 * 1024 * 1024, 0)).toBe('0.0 MB / 64 MB  0.0 MB/s  ETA --:--');
  });
});
