// A cluster member as a separate OS process, for the driver contract test. It joins, writes every
// event it sees as one JSON line on stdout, and obeys one command per stdin line:
//   notify <json>  block  unblock <json>  sync  leave  exit
// Usage: node driver-child.mjs <driver-spec> <port> [refused-id,...] [slow-joiner-id]
//   slow-joiner-id: checkJoin for that joiner busy-waits 3 s, so a test can kill a master mid-decision.
//   driver-spec: local:DIR  or  zookeeper:HOST:PORT[/ROOT][,timeout=SECONDS]
import { createInterface } from 'node:readline';
import type { ClusterDriver, ClusterHandlers, Json, NodeInfo } from '../../src/cluster/driver.js';
import { createLocalDriver } from '../../src/cluster/local.js';
import { parseZkSpec } from '../../src/cluster/zk-layout.js';
import { createZkDriver } from '../../src/cluster/zookeeper.js';
import { systemClock } from '../../src/io/clock.js';
import { systemRandom } from '../../src/io/random.js';
import { connectZk } from '../../src/io/zk-client.js';

function makeDriver(spec: string): ClusterDriver & { close?: () => void } {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const arg = colon < 0 ? '' : spec.slice(colon + 1);
  if (kind === 'local') return createLocalDriver({ dir: arg, logger: stderrLogger });
  if (kind === 'zookeeper') {
    return createZkDriver({ spec: parseZkSpec(arg), connect: connectZk, clock: systemClock, random: systemRandom, logger: stderrLogger });
  }
  throw new Error(`unknown driver ${spec}`);
}

function log(level: string, obj: object, msg?: string): void {
  process.stderr.write(`${JSON.stringify({ level, msg, ...obj, pid: process.pid })}\n`);
}

const stderrLogger = {
  debug() {},
  info: (obj: object, msg?: string) => log('info', obj, msg),
  warn: (obj: object, msg?: string) => log('warn', obj, msg),
  error: (obj: object, msg?: string) => log('error', obj, msg),
};

function emit(record: Record<string, Json>): void {
  // Wall-clock ms with sub-ms precision: the parent compares times across processes.
  const atMs = performance.timeOrigin + performance.now();
  process.stdout.write(`${JSON.stringify({ ...record, atMs })}\n`);
}

const [spec, portText, refusedText, slowJoinerId] = process.argv.slice(2);
const slowCheckJoinMs = 3000;
if (spec === undefined || portText === undefined) throw new Error('usage: driver-child <driver-spec> <port> [refused]');
const port = Number(portText);
const refused = new Set((refusedText ?? '').split(',').filter((id) => id !== ''));
const self: NodeInfo = { id: `127.0.0.1:${port}`, addr: '127.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 };
const driver = makeDriver(spec);

const handlers: ClusterHandlers = {
  checkJoin(joiner) {
    emit({ ev: 'check_join', joiner: joiner.id });
    const untilMs = joiner.id === slowJoinerId ? Date.now() + slowCheckJoinMs : 0;
    while (Date.now() < untilMs) {
      // checkJoin is synchronous by contract: a slow one blocks the process, as a real bug would.
    }
    if (refused.has(joiner.id)) return { accept: false, reason: `refused ${joiner.id}` };
    return { accept: true, payload: { decidedBy: self.id } };
  },
  onJoin(joiner, members, payload) {
    emit({ ev: 'join', node: joiner.id, members: members.map((m) => m.id), payload });
  },
  onLeave(node, members) {
    emit({ ev: 'leave', node: node.id, members: members.map((m) => m.id) });
  },
  onNotify(from, message) {
    emit({ ev: 'notify', from: from.id, message });
  },
};

async function obey(line: string): Promise<void> {
  const space = line.indexOf(' ');
  const command = space < 0 ? line : line.slice(0, space);
  const arg = space < 0 ? '' : line.slice(space + 1);
  switch (command) {
    case 'notify':
      // The send time lets the parent measure append-to-delivery latency on other processes.
      emit({ ev: 'sending', message: JSON.parse(arg) as Json });
      await driver.notify(JSON.parse(arg) as Json);
      break;
    case 'block':
      await driver.block();
      emit({ ev: 'granted' });
      break;
    case 'unblock':
      await driver.unblock(JSON.parse(arg) as Json);
      break;
    case 'sync':
      await driver.sync();
      break;
    case 'leave':
      await driver.leave();
      break;
    case 'exit':
      await driver.leave();
      emit({ ev: 'done', cmd: command });
      process.stdin.destroy();
      return;
    default:
      throw new Error(`unknown command ${line}`);
  }
  emit({ ev: 'done', cmd: command });
}

async function main(): Promise<void> {
  const verdict = await driver.join(self, { port }, handlers);
  emit({ ev: 'joined', verdict: verdict as unknown as Json });
  const input = createInterface({ input: process.stdin });
  // Commands run concurrently (a block may wait while an unblock arrives from elsewhere).
  input.on('line', (line) => {
    const command = line.trim();
    if (command === '') return;
    const name = command.split(' ')[0] ?? command;
    obey(command).catch((error: unknown) => emit({ ev: 'error', cmd: name, message: String(error) }));
  });
}

main().catch((error: unknown) => {
  emit({ ev: 'error', message: String(error) });
  process.exitCode = 1;
});
