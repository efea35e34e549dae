// NBD_OPT_STARTTLS, the TLS side: TLS options built once per server (X.509 certificate, PSK keys,
// client certificate checks), and per upgrade a server-side TLS stream over the connection's own
// socket, started once the plain NBD_REP_ACK has gone out. handshake.ts decides when; this, how.
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

/** What a server offers: the mode and, unless off, the TLS options built from the credentials. */
export interface NbdTls {
  mode: NbdTlsMode;
  serverOptions: tls.TlsOptions | null;
  psk: ReadonlyMap<string, Buffer> | null;
}

export const noNbdTls: NbdTls = { mode: 'off', serverOptions: null, psk: null };

// TLS 1.3 carries PSK with its default suites; for TLS 1.2 clients (GnuTLS offers ECDHE-PSK and
// DHE-PSK first, as nbdkit's priority string does) the PSK suites must be allowed: Node's default
// list bans them (`!PSK`, which no later entry can undo), so that entry is dropped.
const pskCiphers = 'ECDHEPSK:DHEPSK:PSK:!aNULL:!eNULL:!3DES:!SHA1:!CAMELLIA:!ARIA';
// OpenSSL ties a PSK from the callback to SHA-256 in TLS 1.3, and only steers towards SHA-256
// suites when it has no certificate: with both, a client preferring AES-256 (SHA-384) would be
// pushed to certificates it may not have. So with a PSK, TLS 1.3 uses the SHA-256 suites only.
// (Node takes TLS 1.3 suites in `ciphers` too, told apart by their TLS_ prefix.)
const pskTls13Suites = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
const tls12Default = tls.DEFAULT_CIPHERS.split(':').filter(
  (name) => !name.startsWith('TLS_') && name !== '!PSK',
);

/**
 * Reads the credentials and checks them, once, before anything listens: a missing or bad file
 * is a one-line SdError at start, never a failure of the first client.
 */
export function prepareNbdTls(settings: NbdTlsSettings): NbdTls {
  if (settings.mode === 'off') return noNbdTls;
  const credentials = loadNbdTlsCredentials(settings);
  const serverOptions: tls.TlsOptions = {
    minVersion: 'TLSv1.2', // the NBD spec: SHOULD NOT offer older versions by default
    // Our order: GnuTLS clients list ChaCha20 before AES-128-GCM, which AES-NI makes faster.
    honorCipherOrder: true,
    ...(credentials.psk ? { ciphers: [pskTls13Suites, ...tls12Default, pskCiphers].join(':') } : {}),
    ...(credentials.x509 ? { cert: credentials.x509.cert, key: credentials.x509.key } : {}),
    // Client certificates must chain to ca-cert.pem; Node checks the chain and drops the others.
    ...(credentials.x509?.ca ? { ca: credentials.x509.ca, requestCert: true, rejectUnauthorized: true } : {}),
  };
  try {
    tls.createSecureContext(serverOptions);
  } catch (error) {
    const where = settings.certificatesDir ?? settings.pskFile;
    throw new SdError('INVALID_ARGUMENT', `TLS credentials in ${where}: ${(error as Error).message}`);
  }
  return { mode: settings.mode, serverOptions, psk: credentials.psk };
}

/**
 * Wraps a connection's socket in TLS; resolves once the TLS handshake is complete (and, with
 * client certificates, once the client's is verified). The socket goes through a `tls.Server`
 * of its own (Node's way to take an existing connection, `emit('connection')`), because only a
 * server checks the client's certificate chain; it never listens.
 */
export function upgradeToTls(
  prepared: NbdTls,
  socket: net.Socket,
  logger: NbdLogger,
  logFields: object,
): Promise<tls.TLSSocket> {
  const { serverOptions, psk } = prepared;
  if (!serverOptions) return Promise.reject(new SdError('INTERNAL', 'TLS is off'));
  let identity: string | null = null;
  const pskCallback = (_socket: tls.TLSSocket, clientIdentity: string): Buffer | null => {
    const key = psk?.get(clientIdentity) ?? null;
    if (key) identity = clientIdentity;
    else logger.warn({ ...logFields, identity: clientIdentity }, 'nbd: unknown TLS PSK identity');
    return key;
  };
  const server = tls.createServer({ ...serverOptions, ...(psk ? { pskCallback } : {}) });
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    server.once('secureConnection', (secure: tls.TLSSocket) => {
      server.removeAllListeners('tlsClientError');
      secure.on('error', () => {}); // reported through the reader and writer
      socket.once('close', () => secure.destroy());
      const peerCertificate = secure.getPeerCertificate();
      logger.info(
        {
          ...logFields,
          protocol: secure.getProtocol(),
          cipher: secure.getCipher().name,
          identity,
          ...(peerCertificate?.subject ? { clientCertificate: peerCertificate.subject.CN } : {}),
        },
        'nbd: TLS started',
      );
      resolve(secure);
    });
    // OpenSSL's message is a multi-line dump; its reason ("binder does not verify") is the news.
    server.on('tlsClientError', (error: Error & { reason?: string }, secure: tls.TLSSocket) => {
      secure.destroy();
      socket.destroy();
      const reason = secure.authorizationError
        ? `client certificate refused: ${String(secure.authorizationError)}`
        : (error.reason ?? error.message.trim());
      reject(new SdError('REFUSED', `TLS handshake failed: ${reason}`));
    });
    server.emit('connection', socket);
  });
}
