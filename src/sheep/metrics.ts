// The counters a sheep keeps for `sheep --metrics` (plain objects, updated in place) and their
// Prometheus text. The HTTP side is io/metrics-server.ts; nothing here does I/O.
import type { Handler, Handlers } from '../rpc/server.js';
import type { Op } from '../rpc/protocol.js';
import { SdError } from '../engine/errors.js';
import type { Clock } from '../io/clock.js';

/** Latency buckets, seconds. */
const bucketsSec = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram {
  readonly counts = bucketsSec.map(() => 0);
  count = 0;
  sumSec = 0;

  observe(seconds: number): void {
    this.count += 1;
    this.sumSec += seconds;
    for (let i = 0; i < bucketsSec.length; i++) if (seconds <= bucketsSec[i]!) this.counts[i]! += 1;
  }
}

export class Metrics {
  /** Requests served, by op and result (`ok` or the error code). */
  readonly requests = new Map<string, { op: string; result: string; count: number }>();
  readBytes = 0;
  writtenBytes = 0;
  /** Client object I/O (gw.*) and sheep-to-sheep requests (peer.*). */
  readonly clientLatency = new Histogram();
  readonly peerLatency = new Histogram();
  /** Copies found failing their checksums here, and damaged or missing copies rewritten here. */
  checksumFailures = 0;
  repairs = 0;

  countRequest(op: string, result: string): void {
    const key = `${op} ${result}`;
    const row = this.requests.get(key);
    if (row) row.count += 1;
    else this.requests.set(key, { op, result, count: 1 });
  }
}

/** Every handler timed and counted; object bytes counted for gw.read and gw.write. */
export function instrument(handlers: Handlers, metrics: Metrics, clock: Clock): Handlers {
  const wrap = <K extends Op>(op: K, handler: Handler<K>): Handler<K> =>
    async (request, payload) => {
      const started = clock.nowMs();
      let result = 'ok';
      try {
        const answer = await handler(request, payload);
        if (op === 'gw.read' && Buffer.isBuffer(answer)) metrics.readBytes += answer.length;
        if (op === 'gw.write' && payload) metrics.writtenBytes += payload.length;
        return answer;
      } catch (error) {
        result = error instanceof SdError ? error.code : 'INTERNAL';
        throw error;
      } finally {
        metrics.countRequest(op, result);
        const seconds = (clock.nowMs() - started) / 1000;
        if (op.startsWith('gw.')) metrics.clientLatency.observe(seconds);
        else if (op.startsWith('peer.')) metrics.peerLatency.observe(seconds);
      }
    };
  const entries = (Object.keys(handlers) as Op[]).map((op) => [op, wrap(op, handlers[op] as Handler<Op>)]);
  return Object.fromEntries(entries) as unknown as Handlers;
}

/** What is read at scrape time rather than counted. */
export interface Gauges {
  epoch: number;
  objects: number;
  storedBytes: number;
  recovery: { running: boolean; total: number; done: number };
  scrub: { running: boolean; total: number; done: number; passes: number };
}

/** The Prometheus text exposition format, version 0.0.4. */
export function renderMetrics(metrics: Metrics, gauges: Gauges): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: Array<[labels: string, value: number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  const label = (text: string) => text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  metric(
    'sheep_requests_total',
    'counter',
    'Requests served, by op and result.',
    [...metrics.requests.values()].map((r) => [`{op="${label(r.op)}",result="${label(r.result)}"}`, r.count]),
  );
  metric('sheep_read_bytes_total', 'counter', 'Object bytes read by clients through this node.', [['', metrics.readBytes]]);
  metric('sheep_written_bytes_total', 'counter', 'Object bytes written by clients through this node.', [['', metrics.writtenBytes]]);
  const histogram = (name: string, help: string, h: Histogram) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    bucketsSec.forEach((bound, i) => lines.push(`${name}_bucket{le="${bound}"} ${h.counts[i]}`));
    lines.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sumSec}`, `${name}_count ${h.count}`);
  };
  histogram('sheep_client_request_seconds', 'Latency of client object requests (gw.*).', metrics.clientLatency);
  histogram('sheep_peer_request_seconds', 'Latency of sheep-to-sheep requests served (peer.*).', metrics.peerLatency);
  metric('sheep_checksum_failures_total', 'counter', 'Copies found here failing their block checksums.', [['', metrics.checksumFailures]]);
  metric('sheep_repairs_total', 'counter', 'Damaged or missing copies rewritten here from another replica.', [['', metrics.repairs]]);
  metric('sheep_objects', 'gauge', 'Objects stored on this node.', [['', gauges.objects]]);
  metric('sheep_stored_bytes', 'gauge', 'Bytes the object files take on disk.', [['', gauges.storedBytes]]);
  metric('sheep_epoch', 'gauge', 'Current epoch.', [['', gauges.epoch]]);
  metric('sheep_recovery_running', 'gauge', 'Whether recovery runs.', [['', Number(gauges.recovery.running)]]);
  metric('sheep_recovery_objects', 'gauge', 'Objects of the current recovery.', [['', gauges.recovery.total]]);
  metric('sheep_recovery_done_objects', 'gauge', 'Objects the current recovery has done.', [['', gauges.recovery.done]]);
  metric('sheep_scrub_running', 'gauge', 'Whether a scrub pass runs.', [['', Number(gauges.scrub.running)]]);
  metric('sheep_scrub_objects', 'gauge', 'Objects of the current scrub pass.', [['', gauges.scrub.total]]);
  metric('sheep_scrub_done_objects', 'gauge', 'Objects the current scrub pass has checked.', [['', gauges.scrub.done]]);
  metric('sheep_scrub_passes_total', 'counter', 'Scrub passes finished.', [['', gauges.scrub.passes]]);
  return `${lines.join('\n')}\n`;
}
