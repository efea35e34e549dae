// Handshake phase: fixed newstyle greeting, client flags, then option haggling until the client
// picks an export (NBD_OPT_EXPORT_NAME / NBD_OPT_GO), aborts, or breaks the protocol. Written as a
// small state machine: each phase is a step that returns the next phase. NBD_OPT_STARTTLS swaps the
// context's reader and writer for those of the TLS stream (tls.ts does the wrapping).
import { asSdError, SdError } from '../engine/errors.js';
import type { VolumeInfo } from '../engine/volume.js';
import * as c from './constants.js';
import { optionReplyErrorFor } from './errors.js';
import type { ExportRegistry, VolumeLease } from './exports.js';
import {
  nbdBlockSizeMaxBytes,
  nbdBlockSizeMinBytes,
  nbdBlockSizePreferredBytes,
  nbdErrorMessageBytesMax,
  nbdOptionBytesMax,
  nbdOptionsPerConnectionMax,
  nbdStringBytesMax,
} from './limits.js';
import type { NbdLogger } from './logger.js';
import type { StreamReader } from './reader.js';
import type { NbdTlsMode } from './tls.js';
import { encodeMessage, OptionDataParser } from './wire.js';
import type { FrameWriter } from './writer.js';

export interface HandshakeContext {
  /** Replaced by STARTTLS: after the handshake, read the connection's reader and writer here. */
  reader: StreamReader;
  writer: FrameWriter;
  registry: Pick<ExportRegistry, 'acquire'>;
  listNames: () => Promise<string[]>;
  logger: NbdLogger;
  /** off: STARTTLS refused; require: nothing but STARTTLS and ABORT before TLS (FORCEDTLS). */
  tlsMode: NbdTlsMode;
  /** Wraps the connection in TLS (the handshake has already sent the plain ACK); null when off. */
  startTls: (() => Promise<{ reader: StreamReader; writer: FrameWriter }>) | null;
}

/** What option haggling settled, handed to the transmission phase. */
export interface NegotiatedExport {
  lease: VolumeLease;
  exportName: string;
  structuredReplies: boolean;
  /** The connection runs over TLS. */
  tls: boolean;
  /** Context id of base:allocation for NBD_CMD_BLOCK_STATUS, or null if not selected. */
  baseAllocationContextId: number | null;
  transmissionFlags: number;
}

export type HandshakeResult =
  { kind: 'transmission'; negotiated: NegotiatedExport } | { kind: 'closed' };

interface Session {
  noZeroes: boolean;
  structuredReplies: boolean;
  /** Export name the last NBD_OPT_SET_META_CONTEXT selected base:allocation for, if any. */
  metaContextExportName: string | null;
  optionCount: number;
  tls: boolean;
}

type Phase =
  | { name: 'greeting' }
  | { name: 'clientFlags' }
  | { name: 'options'; session: Session }
  | { name: 'done'; result: HandshakeResult };

/** The only context id we hand out: base:allocation is our only metadata context. */
export const baseAllocationContextId = 1;

const serverHandshakeFlags = c.NBD_FLAG_FIXED_NEWSTYLE | c.NBD_FLAG_NO_ZEROES;
const knownClientFlags = c.NBD_FLAG_C_FIXED_NEWSTYLE | c.NBD_FLAG_C_NO_ZEROES;

export async function runHandshake(context: HandshakeContext): Promise<HandshakeResult> {
  let phase: Phase = { name: 'greeting' };
  while (phase.name !== 'done') {
    phase = await step(context, phase);
  }
  return phase.result;
}

async function step(
  context: HandshakeContext,
  phase: Exclude<Phase, { name: 'done' }>,
): Promise<Phase> {
  switch (phase.name) {
    case 'greeting':
      await sendGreeting(context);
      return { name: 'clientFlags' };
    case 'clientFlags':
      return readClientFlags(context);
    case 'options':
      return haggleOneOption(context, phase.session);
  }
}

async function sendGreeting(context: HandshakeContext): Promise<void> {
  const greeting = Buffer.alloc(18);
  greeting.writeBigUInt64BE(c.NBD_MAGIC, 0);
  greeting.writeBigUInt64BE(c.NBD_OPTION_MAGIC, 8);
  greeting.writeUInt16BE(serverHandshakeFlags, 16);
  await context.writer.send([greeting]);
}

async function readClientFlags(context: HandshakeContext): Promise<Phase> {
  const clientFlags = (await context.reader.readExactly(4)).readUInt32BE(0);
  if ((clientFlags & ~knownClientFlags) !== 0) {
    // The spec says MUST drop the connection on unknown client flags.
    throw new SdError('PROTOCOL', `unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const session: Session = {
    noZeroes: (clientFlags & c.NBD_FLAG_C_NO_ZEROES) !== 0,
    structuredReplies: false,
    metaContextExportName: null,
    optionCount: 0,
    tls: false,
  };
  return { name: 'options', session };
}

async function haggleOneOption(context: HandshakeContext, session: Session): Promise<Phase> {
  const header = await context.reader.readExactly(c.OPTION_HEADER_BYTES);
  if (header.readBigUInt64BE(0) !== c.NBD_OPTION_MAGIC) {
    throw new SdError('PROTOCOL', 'bad option magic');
  }
  const option = header.readUInt32BE(8);
  const dataBytes = header.readUInt32BE(12);
  // Checked before anything is allocated for the data: a huge length is a denial of service.
  if (dataBytes > nbdOptionBytesMax) {
    throw new SdError('PROTOCOL', `option ${option} data of ${dataBytes} bytes is over the limit`);
  }
  session.optionCount += 1;
  if (session.optionCount > nbdOptionsPerConnectionMax) {
    throw new SdError('PROTOCOL', 'too many options');
  }
  const data = await context.reader.readExactly(dataBytes);
  const handler = tlsRequiredFirst(context, session, option)
    ? handleTlsRequired
    : (optionHandlers.get(option) ?? handleUnsupported);
  const outcome = await handler(context, session, option, data);
  if (outcome.kind === 'continue') return { name: 'options', session };
  return { name: 'done', result: outcome.result };
}

type OptionOutcome = { kind: 'continue' } | { kind: 'done'; result: HandshakeResult };
type OptionHandler = (
  context: HandshakeContext,
  session: Session,
  option: number,
  data: Buffer,
) => Promise<OptionOutcome>;

const continueHaggling: OptionOutcome = { kind: 'continue' };

/** FORCEDTLS (`require`): before TLS, every option but STARTTLS and ABORT is refused. */
function tlsRequiredFirst(context: HandshakeContext, session: Session, option: number): boolean {
  if (context.tlsMode !== 'require' || session.tls) return false;
  return option !== c.NBD_OPT_STARTTLS && option !== c.NBD_OPT_ABORT;
}

const optionHandlers: ReadonlyMap<number, OptionHandler> = new Map<number, OptionHandler>([
  [c.NBD_OPT_EXPORT_NAME, handleExportName],
  [c.NBD_OPT_ABORT, handleAbort],
  [c.NBD_OPT_LIST, handleList],
  [c.NBD_OPT_STARTTLS, handleStartTls],
  [c.NBD_OPT_INFO, handleInfoOrGo],
  [c.NBD_OPT_GO, handleInfoOrGo],
  [c.NBD_OPT_STRUCTURED_REPLY, handleStructuredReply],
  [c.NBD_OPT_LIST_META_CONTEXT, handleMetaContext],
  [c.NBD_OPT_SET_META_CONTEXT, handleMetaContext],
]);

// ---- Option handlers ----------------------------------------------------------------------------

async function handleUnsupported(
  context: HandshakeContext,
  _s: Session,
  option: number,
): Promise<OptionOutcome> {
  await sendOptionError(context, option, c.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
  return continueHaggling;
}

async function handleTlsRequired(
  context: HandshakeContext,
  _s: Session,
  option: number,
): Promise<OptionOutcome> {
  // NBD_OPT_EXPORT_NAME cannot carry an error: the spec says terminate the session.
  if (option === c.NBD_OPT_EXPORT_NAME) {
    throw new SdError('REFUSED', 'NBD_OPT_EXPORT_NAME without TLS, and TLS is required');
  }
  const message = 'TLS is required: send NBD_OPT_STARTTLS first';
  await sendOptionError(context, option, c.NBD_REP_ERR_TLS_REQD, message);
  return continueHaggling;
}

async function handleStartTls(
  context: HandshakeContext,
  session: Session,
  option: number,
  data: Buffer,
): Promise<OptionOutcome> {
  // Checked in nbdkit's order: bad data, TLS not offered, TLS already running.
  if (data.length !== 0) {
    await sendOptionError(context, option, c.NBD_REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
    return continueHaggling;
  }
  if (!context.startTls) {
    await sendOptionError(context, option, c.NBD_REP_ERR_POLICY, 'TLS is not enabled on this server');
    return continueHaggling;
  }
  if (session.tls) {
    await sendOptionError(context, option, c.NBD_REP_ERR_INVALID, 'TLS is already running');
    return continueHaggling;
  }
  // Stop reading plain bytes before the ACK: what follows it is the client's TLS hello, which
  // must stay in the socket for TLS. A client may not send anything before our reply.
  if (context.reader.detach() > 0) {
    throw new SdError('PROTOCOL', 'data sent before the reply to NBD_OPT_STARTTLS');
  }
  await sendOptionReply(context, option, c.NBD_REP_ACK);
  const channel = await context.startTls();
  context.reader = channel.reader;
  context.writer = channel.writer;
  // What was negotiated in the clear may have been tampered with: start again, as nbdkit does.
  session.tls = true;
  session.structuredReplies = false;
  session.metaContextExportName = null;
  return continueHaggling;
}

async function handleAbort(
  context: HandshakeContext,
  _s: Session,
  option: number,
): Promise<OptionOutcome> {
  // The client may already have gone; a failed ACK changes nothing.
  await sendOptionReply(context, option, c.NBD_REP_ACK).catch(() => {});
  return { kind: 'done', result: { kind: 'closed' } };
}

async function handleList(
  context: HandshakeContext,
  _s: Session,
  option: number,
  data: Buffer,
): Promise<OptionOutcome> {
  if (data.length !== 0) {
    await sendOptionError(context, option, c.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
    return continueHaggling;
  }
  let names: string[];
  try {
    names = await context.listNames();
  } catch (error) {
    const sdError = asSdError(error);
    context.logger.error({ err: sdError, code: sdError.code }, 'nbd: listing exports failed');
    await sendOptionError(context, option, c.NBD_REP_ERR_SHUTDOWN, sdError.message);
    return continueHaggling;
  }
  for (const name of names) {
    const nameBytes = Buffer.from(name, 'utf8');
    if (nameBytes.length > nbdStringBytesMax) continue;
    const payload = Buffer.alloc(4 + nameBytes.length);
    payload.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(payload, 4);
    await sendOptionReply(context, option, c.NBD_REP_SERVER, payload);
  }
  await sendOptionReply(context, option, c.NBD_REP_ACK);
  return continueHaggling;
}

async function handleStructuredReply(
  context: HandshakeContext,
  session: Session,
  option: number,
  data: Buffer,
): Promise<OptionOutcome> {
  if (data.length !== 0) {
    await sendOptionError(
      context,
      option,
      c.NBD_REP_ERR_INVALID,
      'NBD_OPT_STRUCTURED_REPLY takes no data',
    );
    return continueHaggling;
  }
  session.structuredReplies = true;
  await sendOptionReply(context, option, c.NBD_REP_ACK);
  return continueHaggling;
}

async function handleExportName(
  context: HandshakeContext,
  session: Session,
  _option: number,
  data: Buffer,
): Promise<OptionOutcome> {
  // NBD_OPT_EXPORT_NAME cannot report errors: a refusal must be a hard disconnect.
  const exportName = new OptionDataParser(data).string(data.length);
  if (exportName.length === 0) throw new SdError('NO_VDI', 'no default export; name a VDI');
  const lease = await context.registry.acquire(exportName);
  const negotiated = negotiatedExport(lease, exportName, session);
  const reply = Buffer.alloc(10 + (session.noZeroes ? 0 : c.EXPORT_NAME_REPLY_PADDING_BYTES));
  reply.writeBigUInt64BE(BigInt(lease.volume.info.sizeBytes), 0);
  reply.writeUInt16BE(negotiated.transmissionFlags, 8);
  try {
    await context.writer.send([reply]);
  } catch (error) {
    await lease.release();
    throw error;
  }
  return { kind: 'done', result: { kind: 'transmission', negotiated } };
}

interface InfoRequest {
  exportName: string;
  infoTypes: number[];
}

function parseInfoRequest(data: Buffer): InfoRequest {
  const parser = new OptionDataParser(data);
  const exportName = parser.string(parser.uint32());
  const requestCount = parser.uint16();
  const infoTypes: number[] = [];
  for (let index = 0; index < requestCount; index += 1) infoTypes.push(parser.uint16());
  parser.expectEnd();
  return { exportName, infoTypes };
}

async function handleInfoOrGo(
  context: HandshakeContext,
  session: Session,
  option: number,
  data: Buffer,
): Promise<OptionOutcome> {
  let request: InfoRequest;
  try {
    request = parseInfoRequest(data);
  } catch (error) {
    await sendOptionError(context, option, c.NBD_REP_ERR_INVALID, asSdError(error).message);
    return continueHaggling;
  }
  if (request.exportName.length === 0) {
    await sendOptionError(context, option, c.NBD_REP_ERR_UNKNOWN, 'no default export; name a VDI');
    return continueHaggling;
  }
  let lease: VolumeLease;
  try {
    lease = await context.registry.acquire(request.exportName);
  } catch (error) {
    await refuseExport(context, option, request.exportName, asSdError(error));
    return continueHaggling;
  }
  const negotiated = negotiatedExport(lease, request.exportName, session);
  try {
    await sendExportInfo(context, option, negotiated, lease.volume.info, request.infoTypes);
    await sendOptionReply(context, option, c.NBD_REP_ACK);
  } catch (error) {
    await lease.release();
    throw error;
  }
  if (option === c.NBD_OPT_GO)
    return { kind: 'done', result: { kind: 'transmission', negotiated } };
  await lease.release();
  return continueHaggling;
}

async function refuseExport(
  context: HandshakeContext,
  option: number,
  exportName: string,
  error: SdError,
): Promise<void> {
  const known =
    error.code === 'NO_VDI' ||
    error.code === 'NO_TAG' ||
    error.code === 'INVALID_ARGUMENT' ||
    error.code === 'BUSY' ||
    error.code === 'VDI_LOCKED';
  const fields = { exportName, code: error.code, err: error };
  if (known) context.logger.info(fields, 'nbd: export not available');
  else context.logger.error(fields, 'nbd: opening export failed');
  await sendOptionError(
    context,
    option,
    optionReplyErrorFor(error),
    `${exportName}: ${error.message}`,
  );
}

async function sendExportInfo(
  context: HandshakeContext,
  option: number,
  negotiated: NegotiatedExport,
  info: VolumeInfo,
  infoTypes: readonly number[],
): Promise<void> {
  const exportInfo = Buffer.alloc(12);
  exportInfo.writeUInt16BE(c.NBD_INFO_EXPORT, 0);
  exportInfo.writeBigUInt64BE(BigInt(info.sizeBytes), 2);
  exportInfo.writeUInt16BE(negotiated.transmissionFlags, 10);
  await sendOptionReply(context, option, c.NBD_REP_INFO, exportInfo);
  // Sent even when not asked: our maximum is below the spec's default of "unlimited".
  const blockSize = Buffer.alloc(14);
  blockSize.writeUInt16BE(c.NBD_INFO_BLOCK_SIZE, 0);
  blockSize.writeUInt32BE(nbdBlockSizeMinBytes, 2);
  blockSize.writeUInt32BE(nbdBlockSizePreferredBytes, 6);
  blockSize.writeUInt32BE(nbdBlockSizeMaxBytes, 10);
  await sendOptionReply(context, option, c.NBD_REP_INFO, blockSize);
  if (infoTypes.includes(c.NBD_INFO_NAME)) {
    await sendOptionReply(
      context,
      option,
      c.NBD_REP_INFO,
      infoString(c.NBD_INFO_NAME, negotiated.exportName),
    );
  }
  if (infoTypes.includes(c.NBD_INFO_DESCRIPTION)) {
    await sendOptionReply(
      context,
      option,
      c.NBD_REP_INFO,
      infoString(c.NBD_INFO_DESCRIPTION, describeVolume(info)),
    );
  }
}

function infoString(infoType: number, text: string): Buffer {
  const textBytes = encodeMessage(text, nbdStringBytesMax);
  const payload = Buffer.alloc(2 + textBytes.length);
  payload.writeUInt16BE(infoType, 0);
  textBytes.copy(payload, 2);
  return payload;
}

function describeVolume(info: VolumeInfo): string {
  const what = info.tag !== '' || info.readOnly ? `snapshot ${info.tag || info.snapId} of ` : '';
  return (
    `sheepdog ${what}VDI ${info.name} (vid ${info.vid.toString(16)})` +
    (info.readOnly ? ', read-only' : '')
  );
}

// ---- Metadata contexts --------------------------------------------------------------------------

interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

function parseMetaContextRequest(data: Buffer): MetaContextRequest {
  const parser = new OptionDataParser(data);
  const exportName = parser.string(parser.uint32());
  const queryCount = parser.uint32();
  const queries: string[] = [];
  for (let index = 0; index < queryCount; index += 1) {
    const query = parser.string(parser.uint32());
    if (!query.includes(':'))
      throw new SdError('INVALID_ARGUMENT', `query ${query} has no namespace`);
    queries.push(query);
  }
  parser.expectEnd();
  return { exportName, queries };
}

/** LIST: no query or `base:` lists base:allocation. SET: only the exact name selects it. */
function matchesBaseAllocation(queries: readonly string[], listing: boolean): boolean {
  if (listing && queries.length === 0) return true;
  return queries.some(
    (query) => query === c.NBD_META_CONTEXT_BASE_ALLOCATION || (listing && query === 'base:'),
  );
}

async function handleMetaContext(
  context: HandshakeContext,
  session: Session,
  option: number,
  data: Buffer,
): Promise<OptionOutcome> {
  const listing = option === c.NBD_OPT_LIST_META_CONTEXT;
  // SET replaces the selection even when it fails.
  if (!listing) session.metaContextExportName = null;
  if (!session.structuredReplies) {
    await sendOptionError(
      context,
      option,
      c.NBD_REP_ERR_INVALID,
      'negotiate structured replies first',
    );
    return continueHaggling;
  }
  let request: MetaContextRequest;
  try {
    request = parseMetaContextRequest(data);
  } catch (error) {
    await sendOptionError(context, option, c.NBD_REP_ERR_INVALID, asSdError(error).message);
    return continueHaggling;
  }
  if (matchesBaseAllocation(request.queries, listing)) {
    const contextName = Buffer.from(c.NBD_META_CONTEXT_BASE_ALLOCATION, 'utf8');
    const payload = Buffer.alloc(4 + contextName.length);
    // The spec reserves id 0 for listings.
    payload.writeUInt32BE(listing ? 0 : baseAllocationContextId, 0);
    contextName.copy(payload, 4);
    await sendOptionReply(context, option, c.NBD_REP_META_CONTEXT, payload);
    if (!listing) session.metaContextExportName = request.exportName;
  }
  await sendOptionReply(context, option, c.NBD_REP_ACK);
  return continueHaggling;
}

// ---- Shared pieces ------------------------------------------------------------------------------

function negotiatedExport(
  lease: VolumeLease,
  exportName: string,
  session: Session,
): NegotiatedExport {
  const info = lease.volume.info;
  return {
    lease,
    exportName,
    structuredReplies: session.structuredReplies,
    tls: session.tls,
    // The selection only counts for the export it was made for.
    baseAllocationContextId:
      session.metaContextExportName === exportName ? baseAllocationContextId : null,
    transmissionFlags: transmissionFlagsFor(info.readOnly, session.structuredReplies),
  };
}

/**
 * What we advertise, and why each holds: FLUSH makes every write acknowledged before it durable on
 * every replica, FUA makes its write durable before the reply (docs/durability.md; both true, and
 * cheap on a writethrough export), all connections to an export share one Volume and so one
 * flush (CAN_MULTI_CONN), a READ is one
 * chunk (DF, only meaningful with structured replies), CACHE is accepted as a validated no-op,
 * which the spec allows. A read-only export does not offer the commands that would write.
 */
export function transmissionFlagsFor(readOnly: boolean, structuredReplies: boolean): number {
  let flags =
    c.NBD_FLAG_HAS_FLAGS |
    c.NBD_FLAG_SEND_FLUSH |
    c.NBD_FLAG_CAN_MULTI_CONN |
    c.NBD_FLAG_SEND_CACHE;
  if (readOnly) flags |= c.NBD_FLAG_READ_ONLY;
  else flags |= c.NBD_FLAG_SEND_FUA | c.NBD_FLAG_SEND_TRIM | c.NBD_FLAG_SEND_WRITE_ZEROES;
  if (structuredReplies) flags |= c.NBD_FLAG_SEND_DF;
  return flags;
}

async function sendOptionReply(
  context: HandshakeContext,
  option: number,
  replyType: number,
  payload?: Buffer,
): Promise<void> {
  const header = Buffer.alloc(c.OPTION_REPLY_HEADER_BYTES);
  header.writeBigUInt64BE(c.NBD_OPTION_REPLY_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(replyType, 12);
  header.writeUInt32BE(payload?.length ?? 0, 16);
  await context.writer.send(payload && payload.length > 0 ? [header, payload] : [header]);
}

async function sendOptionError(
  context: HandshakeContext,
  option: number,
  replyType: number,
  message: string,
): Promise<void> {
  await sendOptionReply(
    context,
    option,
    replyType,
    encodeMessage(message, nbdErrorMessageBytesMax),
  );
}
