// NBD_OPT_STARTTLS, the TLS side: one secure context per server (X.509 certificate and/or PSK), and
// per upgrade a server-side TLSSocket over the connection's own socket, started once the plain
// NBD_REP_ACK has gone out. The handshake phase (handshake.ts) decides when; this file only how.
import type net from 'node:net';
import tls from 'node:tls';
import { SdError } from '../engine/errors.js';
import type { NbdLogger } from './logger.js';
import {
  loadNbdTlsCredentials,
  type NbdTlsMode,
  type NbdTlsSettings,
} from './tls-credentials.js';

export type { NbdTlsMode, NbdTlsSettings } from './tls-credentials.js';

/** What a server offers: the mode and, unless off, the context built from the credentials. */
export interface NbdTls {
  mode: NbdTlsMode;
  secureContext: tls.SecureContext | null;
  psk: ReadonlyMap<string, Buffer> | null;
}

export const noNbdTls: NbdTls = { mode: 'off', secureContext: null, psk: null };

// TLS 1.3 carries PSK with its default suites; for TLS 1.2 clients (GnuTLS offers ECDHE-PSK and
// DHE-PSK first, as nbdkit's priority string does) the PSK suites must be named: OpenSSL leaves
// them out by default. Plain PSK (no forward secrecy) comes last, as in nbdkit.
const pskCiphers = 'ECDHEPSK:DHEPSK:PSK:!aNULL:!eNULL:!3DES:!SHA1:!CAMELLIA:!ARIA';
// OpenSSL ties a PSK from the callback to SHA-256 in TLS 1.3, and only steers towards SHA-256
// suites when it has no certificate: with both, a client preferring AES-256 (SHA-384) would be
// pushed to certificates it may not have. So with a PSK, TLS 1.3 uses the SHA-256 suites only.
// (Node takes TLS 1.3 suites in `ciphers` too, told apart by their TLS_ prefix.)
const pskTls13Suites = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
// Node's default list bans PSK (`!PSK`, which no later entry can undo): dropped here.
const tls12Default = tls.DEFAULT_CIPHERS.split(':').filter(
  (name) => !name.startsWith('TLS_') && name !== '!PSK',
);

/**
 * Reads the credentials and builds the context, once, before anything listens: a missing or bad
 * file is a one-line SdError at start, never a failure of the first client.
 */
export function prepareNbdTls(settings: NbdTlsSettings): NbdTls {
  if (settings.mode === 'off') return noNbdTls;
  const credentials = loadNbdTlsCredentials(settings);
  try {
    const secureContext = tls.createSecureContext({
      minVersion: 'TLSv1.2', // the NBD spec: SHOULD NOT offer older versions by default
      ...(credentials.psk
        ? { ciphers: [pskTls13Suites, ...tls12Default, pskCiphers].join(':') }
        : {}),
      ...(credentials.x509 ?? {}),
    });
    return { mode: settings.mode, secureContext, psk: credentials.psk };
  } catch (error) {
    const where = settings.certificatesDir ?? settings.pskFile;
    throw new SdError('INVALID_ARGUMENT', `TLS credentials in ${where}: ${(error as Error).message}`);
  }
}

/** Wraps a connection's socket in TLS; resolves once the TLS handshake is complete. */
export function upgradeToTls(
  prepared: NbdTls,
  socket: net.Socket,
  logger: NbdLogger,
  logFields: object,
): Promise<tls.TLSSocket> {
  const { secureContext, psk } = prepared;
  if (!secureContext) return Promise.reject(new SdError('INTERNAL', 'TLS is off'));
  let identity: string | null = null;
  const pskCallback = (_socket: tls.TLSSocket, clientIdentity: string): Buffer | null => {
    const key = psk?.get(clientIdentity) ?? null;
    if (key) identity = clientIdentity;
    else logger.warn({ ...logFields, identity: clientIdentity }, 'nbd: unknown TLS PSK identity');
    return key;
  };
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext,
    ...(psk ? { pskCallback } : {}),
  });
  secure.on('error', () => {}); // reported through the promise below, then the reader and writer
  socket.once('close', () => secure.destroy());
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const fail = (reason: string): void => {
      secure.off('secure', succeed);
      secure.destroy();
      reject(new SdError('REFUSED', `TLS handshake failed: ${reason}`));
    };
    // OpenSSL's message is a multi-line dump; its reason ("binder does not verify") is the news.
    const onError = (error: Error & { reason?: string }): void =>
      fail(error.reason ?? error.message.trim());
    const onClose = (): void => fail('the connection closed');
    const succeed = (): void => {
      secure.off('error', onError);
      secure.off('close', onClose);
      const cipher = secure.getCipher();
      logger.info(
        { ...logFields, protocol: secure.getProtocol(), cipher: cipher.name, identity },
        'nbd: TLS started',
      );
      resolve(secure);
    };
    secure.once('secure', succeed);
    secure.once('error', onError);
    secure.once('close', onClose);
  });
}
