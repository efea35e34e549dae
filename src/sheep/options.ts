// `sheep [options] STORE_DIR`: every value checked, one line naming the option on a bad one.
import { Command, CommanderError } from 'commander';
import { parseZkSpec, type ZkSpec } from '../cluster/zk-layout.js';
import { SdError } from '../engine/errors.js';
import { externalIpv4, isIpAddress } from '../io/net-address.js';
import type { NbdTlsMode, NbdTlsSettings } from '../nbd/tls-credentials.js';
import { mdDisksMax, nbdPortBase, portDefault, vnodesDefault, vnodesMax, zoneMax } from '../engine/limits.js';
import { packageVersion } from '../engine/version.js';
import { logLevelDefault, logLevelNames, parseLogLevel } from './log-level.js';

export type ClusterChoice = { kind: 'local'; dir: string | undefined } | { kind: 'zookeeper'; spec: ZkSpec };

export interface SheepOptions {
  storeDir: string;
  /** `STORE,DISK1,DISK2…`: the object disks of a multi-disk sheep (none: STORE/obj). */
  diskDirs: string[];
  port: number;
  bindAddr: string;
  myAddr: string;
  zone: number;
  vnodes: number;
  cluster: ClusterChoice;
  foreground: boolean;
  /** The original's level number (sheep/log-level.ts). */
  logLevel: number;
  nbd: { host: string; port: number; tls: NbdTlsSettings; idleTimeoutMs: number } | null;
  /** How long a daemonizing launcher waits for the daemon to be up before it stops it. */
  startTimeoutSec: number;
  /** -k: the cluster key file to join with (default: the store's own cluster.key). */
  keyFile: string | undefined;
  /** --metrics: where Prometheus text is served over HTTP; off by default. */
  metrics: { host: string; port: number } | null;
  /** --scrub off: no background scrubbing (default on). */
  scrub: boolean;
  /** --writethrough: every NBD write durable before it is acknowledged (docs/durability.md). */
  writethrough: boolean;
}

export const startTimeoutSecDefault = 30;
const startTimeoutSecMax = 3600;
const nbdTlsModes: readonly NbdTlsMode[] = ['off', 'on', 'require'];

/** A week: longer is as good as never. */
const nbdIdleTimeoutSecMax = 7 * 24 * 3600;

function integer(option: string, text: string, min: number, max: number): number {
  if (!inRange(text, min, max)) throw new SdError('INVALID_ARGUMENT', `invalid ${option} '${text}': must be an integer from ${min} to ${max}`);
  return Number(text);
}

function inRange(text: string, min: number, max: number): boolean {
  return /^\d+$/.test(text) && Number(text) >= min && Number(text) <= max;
}

/** An option the original had, refused with the original's words. */
function checked(text: string, min: number, max: number, message: string): number {
  if (!inRange(text, min, max)) throw new SdError('INVALID_ARGUMENT', message);
  return Number(text);
}

/** `-v`: the original's version text and features. */
export const versionText = `Sheepdog daemon version ${packageVersion}\n\nSupported features:\n\tCluster drivers: zookeeper local\n\tMiscellaneous: nbd\n`;

/**
 * `-l LEVEL` or the original's `-l level=LEVEL`: its level names (emerg ... debug) or pino's
 * (fatal, error, warn, info, debug, trace).
 */
function parseLogOption(text: string): number {
  let levelText = text;
  if (text.includes('=')) {
    levelText = 'info';
    for (const part of text.split(',')) {
      const [key, value] = part.split('=', 2) as [string, string | undefined];
      if (key !== 'level' || value === undefined) throw new SdError('INVALID_ARGUMENT', `invalid option ${part}`);
      levelText = value;
    }
  }
  const level = parseLogLevel(levelText);
  if (level === undefined) throw new SdError('INVALID_ARGUMENT', `Invalid log level '${levelText}'`);
  return level;
}

function onOff(option: string, text: string): boolean {
  if (text !== 'on' && text !== 'off') throw new SdError('INVALID_ARGUMENT', `invalid ${option} '${text}': expected on or off`);
  return text === 'on';
}

function address(option: string, text: string): string {
  if (!isIpAddress(text)) throw new SdError('INVALID_ARGUMENT', `invalid ${option} '${text}': not an IP address`);
  return text;
}

function parseCluster(text: string): ClusterChoice {
  if (text === 'local') return { kind: 'local', dir: undefined };
  if (text.startsWith('local:') && text.length > 'local:'.length) return { kind: 'local', dir: text.slice('local:'.length) };
  if (text.startsWith('zookeeper:')) return { kind: 'zookeeper', spec: parseZkSpec(text.slice('zookeeper:'.length)) };
  throw new SdError('INVALID_ARGUMENT', `Invalid cluster driver '${text}'`);
}

/** NBD listens on loopback unless --nbd names an address: a VM's disk is not for the whole network. */
const nbdHostDefault = '127.0.0.1';

function parseNbdAddress(text: string | undefined, sheepPort: number): { host: string; port: number } | null {
  if (text === 'off') return null;
  if (text === undefined) {
    const port = nbdPortBase + (sheepPort - portDefault);
    return port >= 1 && port <= 65535 ? { host: nbdHostDefault, port } : null;
  }
  const match = /^(?:(.+):)?(\d+)$/.exec(text);
  if (!match) throw new SdError('INVALID_ARGUMENT', `invalid --nbd '${text}': expected [ADDR:]PORT or off`);
  return { host: match[1] ? address('--nbd address', match[1]) : nbdHostDefault, port: integer('--nbd port', match[2]!, 1, 65535) };
}

/** Metrics too stay on loopback unless an address is given. */
function parseMetricsAddress(text: string | undefined): { host: string; port: number } | null {
  if (text === undefined || text === 'off') return null;
  const match = /^(?:(.+):)?(\d+)$/.exec(text);
  if (!match) throw new SdError('INVALID_ARGUMENT', `invalid --metrics '${text}': expected [ADDR:]PORT or off`);
  return { host: match[1] ? address('--metrics address', match[1]) : '127.0.0.1', port: integer('--metrics port', match[2]!, 1, 65535) };
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}

interface NbdTlsFlags {
  mode: string | undefined;
  pskFile: string | undefined;
  certificatesDir: string | undefined;
  verifyPeer: boolean;
}

/**
 * Off loopback, TLS is offered by default and the credentials must be given (or TLS turned off
 * on purpose); on loopback it is off unless asked for. Credentials alone mean `on`.
 */
function parseNbdTls(flags: NbdTlsFlags, host: string | null): NbdTlsSettings {
  const { mode, pskFile, certificatesDir, verifyPeer } = flags;
  const given = mode !== undefined || pskFile !== undefined || certificatesDir !== undefined || verifyPeer;
  if (host === null) {
    if (given) throw new SdError('INVALID_ARGUMENT', '--nbd-tls options need NBD, but --nbd is off');
    return { mode: 'off' };
  }
  if (mode !== undefined && !nbdTlsModes.includes(mode as NbdTlsMode)) {
    throw new SdError('INVALID_ARGUMENT', `invalid --nbd-tls '${mode}': expected ${nbdTlsModes.join(', ')}`);
  }
  const credentials = { ...(pskFile !== undefined ? { pskFile } : {}), ...(certificatesDir !== undefined ? { certificatesDir } : {}) };
  const hasCredentials = pskFile !== undefined || certificatesDir !== undefined;
  if (verifyPeer && (certificatesDir === undefined || pskFile !== undefined)) {
    throw new SdError('INVALID_ARGUMENT', '--nbd-tls-verify-peer needs --nbd-tls-certificates DIR and no --nbd-tls-psk');
  }
  if (mode === 'off') {
    if (hasCredentials) throw new SdError('INVALID_ARGUMENT', '--nbd-tls off conflicts with --nbd-tls-psk and --nbd-tls-certificates');
    return { mode: 'off' };
  }
  if (hasCredentials) return { mode: (mode as NbdTlsMode | undefined) ?? 'on', ...credentials, ...(verifyPeer ? { verifyPeer } : {}) };
  if (mode !== undefined) {
    throw new SdError('INVALID_ARGUMENT', `--nbd-tls ${mode} needs --nbd-tls-psk FILE or --nbd-tls-certificates DIR`);
  }
  if (isLoopback(host)) return { mode: 'off' };
  throw new SdError(
    'INVALID_ARGUMENT',
    `NBD on ${host} is open to other hosts: give --nbd-tls-psk FILE or --nbd-tls-certificates DIR, or --nbd-tls off to serve it without TLS`,
  );
}

/** The address others reach us at when none is given: a non-loopback IPv4 address, if any. */
function defaultMyAddr(bindAddr: string): string {
  if (bindAddr !== '0.0.0.0' && bindAddr !== '::') return bindAddr;
  return externalIpv4() ?? '127.0.0.1';
}

/**
 * The original read the zone from the IPv4 address. Many sheep on one loopback address would
 * then share a zone and the cluster could keep only one copy, so there the port is the zone.
 */
export function defaultZone(addr: string, port: number): number {
  if (addr.startsWith('127.') || addr === '::1') return port;
  const bytes = addr.split('.').map(Number);
  if (bytes.length !== 4) return port;
  return (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
}

function nbdOptions(o: Record<string, string | boolean | undefined>, sheepPort: number, idleTimeoutMs: number): SheepOptions['nbd'] {
  const where = parseNbdAddress(o['nbd'] as string | undefined, sheepPort);
  const text = (key: string) => (typeof o[key] === 'string' ? (o[key] as string) : undefined);
  const tls = parseNbdTls({ mode: text('nbdTls'), pskFile: text('nbdTlsPsk'), certificatesDir: text('nbdTlsCertificates'), verifyPeer: o['nbdTlsVerifyPeer'] === true }, where?.host ?? null);
  return where && { ...where, tls, idleTimeoutMs };
}

/** sheep's options as a commander program: what parseSheepOptions parses and its man page shows. */
export function sheepProgram(): Command {
  return new Command('sheep')
    .description('Sheepdog storage daemon: stores objects of virtual disks in STORE_DIR')
    .argument('<STORE_DIR>', 'directory of this sheep\'s objects, epochs, config and log; STORE_DIR,DISK1[,DISK2…]: objects on the disks instead (docs/multi-disk.md)')
    .option('-p, --port <PORT>', `specify the TCP port on which to listen (default: ${portDefault})`, String(portDefault))
    .option('-b, --bind <ADDR>', 'specify IP address of interface to listen on', '0.0.0.0')
    .option('-y, --myaddr <ADDR>', 'specify the address advertised to other sheep (default: the bind address)')
    .option('-z, --zone <ZONE>', 'specify the zone id, 0-4294967295 (default: determined by listen address)')
    .option('-V, --vnodes <N>', `set number of vnodes, 1-${vnodesMax} (default ${vnodesDefault})`)
    .option('-g, --gateway', 'make the program run as a gateway mode: 0 vnodes, stores nothing')
    .option('-c, --cluster <DRIVER>', 'specify the cluster driver: local, local:DIR or zookeeper:HOST:PORT[,HOST:PORT...][/ROOT][,timeout=SECONDS]', 'local')
    .option('-f, --foreground', 'make the program run in foreground (default: daemonize, pid file in the store)')
    .option('-l, --log-level <LEVEL>', `specify the log level: ${logLevelNames.join(', ')} (or level=LEVEL)`, logLevelNames[logLevelDefault])
    .version(versionText.trimEnd(), '-v, --version', 'show the version')
    .option('-k, --key-file <FILE>', 'cluster key to join with (default: STORE_DIR/cluster.key, or handed over on joining)')
    .option('--nbd <[ADDR:]PORT|off>', `NBD listen address (default ${nbdHostDefault}) and port (default ${nbdPortBase} + port - ${portDefault})`)
    .option('--nbd-tls <off|on|require>', 'NBD STARTTLS: off, on (offered) or require (default: off on loopback, else on)')
    .option('--nbd-tls-psk <FILE>', 'NBD TLS pre-shared keys, identity:hexkey lines (psktool)')
    .option('--nbd-tls-certificates <DIR>', 'NBD TLS X.509: DIR/server-cert.pem and DIR/server-key.pem')
    .option('--nbd-tls-verify-peer', 'NBD TLS X.509: clients need a certificate signed by DIR/ca-cert.pem')
    .option('--nbd-idle-timeout <SEC>', `close NBD sessions with no traffic for SEC seconds, 0-${nbdIdleTimeoutSecMax} (default 0: never)`, '0')
    .option('--metrics <[ADDR:]PORT|off>', 'serve Prometheus metrics over HTTP at /metrics (default off; address default 127.0.0.1)')
    .option('--scrub <on|off>', 'background scrubbing of the objects against their checksums', 'on')
    .option('--writethrough', 'acknowledge NBD writes only once on every replica\'s disk (default: once in its cache, made durable by FLUSH and FUA)')
    .option('--start-timeout <SEC>', `seconds to wait for the daemon to be up, 1-${startTimeoutSecMax}; past it, it is stopped`, String(startTimeoutSecDefault))
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text.startsWith('error:') ? '' : text) });
}

export function parseSheepOptions(argv: readonly string[]): SheepOptions {
  const program = sheepProgram();
  try {
    program.parse(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) throw error; // --help
      if (error.code === 'commander.unknownOption') {
        throw new SdError('INVALID_ARGUMENT', `${error.message.replace(/^error: unknown/, 'unrecognized')}\nTry 'sheep --help' for more information.`);
      }
      throw new SdError('INVALID_ARGUMENT', error.message.replace(/^error: /, ''));
    }
    throw error;
  }
  const o = program.opts<Record<string, string | boolean | undefined>>();
  const port = checked(String(o['port']), 1, 65535, `Invalid port number '${String(o['port'])}'`);
  const bindText = String(o['bind']);
  if (!isIpAddress(bindText)) throw new SdError('INVALID_ARGUMENT', `Bad address '${bindText}'`);
  const bindAddr = bindText;
  const myAddrText = o['myaddr'] ? String(o['myaddr']) : undefined;
  if (myAddrText !== undefined && !isIpAddress(myAddrText)) throw new SdError('INVALID_ARGUMENT', `Invalid address: '${myAddrText}'`);
  const myAddr = myAddrText ?? defaultMyAddr(bindAddr);
  if (o['gateway'] && o['vnodes'] !== undefined) throw new SdError('INVALID_ARGUMENT', "Options '-g' and '-V' can not be both specified");
  const vnodesText = String(o['vnodes']);
  const zoneText = String(o['zone']);
  const [storeDir = '', ...diskDirs] = program.args[0]!.split(',');
  if (storeDir === '' || diskDirs.includes('')) throw new SdError('INVALID_ARGUMENT', `Invalid store path '${program.args[0]!}': an empty directory name`);
  if (diskDirs.length > mdDisksMax) throw new SdError('INVALID_ARGUMENT', `Invalid store path: at most ${mdDisksMax} disks`);
  return {
    storeDir,
    diskDirs,
    port,
    bindAddr,
    myAddr,
    zone:
      o['zone'] === undefined
        ? defaultZone(myAddr, port)
        : checked(zoneText, 0, zoneMax, `Invalid zone id '${zoneText}': must be an integer between 0 and ${zoneMax}`),
    vnodes:
      o['gateway'] ? 0
      : o['vnodes'] === undefined ? vnodesDefault
      : checked(vnodesText, 1, vnodesMax, `Invalid number of vnodes '${vnodesText}': must be an integer between 1 and ${vnodesMax}`),
    cluster: parseCluster(String(o['cluster'])),
    foreground: o['foreground'] === true,
    logLevel: parseLogOption(String(o['logLevel'])),
    nbd: nbdOptions(o, port, integer('--nbd-idle-timeout', String(o['nbdIdleTimeout']), 0, nbdIdleTimeoutSecMax) * 1000),
    startTimeoutSec: integer('--start-timeout', String(o['startTimeout']), 1, startTimeoutSecMax),
    keyFile: o['keyFile'] === undefined ? undefined : String(o['keyFile']),
    metrics: parseMetricsAddress(o['metrics'] as string | undefined),
    scrub: onOff('--scrub', String(o['scrub'])),
    writethrough: o['writethrough'] === true,
  };
}
