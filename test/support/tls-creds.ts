// TLS credentials for NBD tests, made the way an admin makes them: a PSK file in psktool's format
// and, with openssl, a CA and a server certificate for 127.0.0.1, laid out as qemu and nbdkit want
// them (ca-cert.pem, server-cert.pem, server-key.pem), plus client certificates of that CA and of
// another one, for servers that verify their clients.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface TlsFiles {
  /** identity:hexkey lines for `alice` (the server's and a good client's file). */
  pskFile: string;
  /** qemu tls-creds-psk dir=…: keys.psk with alice's key. */
  qemuPskDir: string;
  /** alice with a key the server does not have. */
  wrongPskFile: string;
  /** Server side: ca-cert.pem, server-cert.pem, server-key.pem. */
  certificatesDir: string;
  /** Client side (qemu tls-creds-x509 endpoint=client, libnbd tls-certificates=): ca-cert.pem. */
  clientCertificatesDir: string;
  /** A CA the server's certificate does not chain to. */
  otherCaDir: string;
  /** Client side with a client certificate the server's CA signed: ca-cert.pem, client-*.pem. */
  clientWithCertDir: string;
  /** Client side with a client certificate of the other CA. */
  strangerCertDir: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): void {
  fs.mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

/** Leaf certificate `role` (server or client) signed by the CA in caDir, written to outDir. */
function makeLeaf(caDir: string, outDir: string, role: 'server' | 'client', name: string): void {
  fs.mkdirSync(outDir, { recursive: true });
  const ext = path.join(outDir, `${role}.ext`);
  fs.writeFileSync(ext, (role === 'server' ? 'subjectAltName=IP:127.0.0.1\n' : '') +
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
    `extendedKeyUsage=${role === 'server' ? 'serverAuth' : 'clientAuth'}\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${role}-key.pem`, '-out', `${role}.csr`, '-subj', `/CN=${name}`], outDir);
  openssl(['x509', '-req', '-in', `${role}.csr`, '-CA', path.join(caDir, 'ca-cert.pem'), '-CAkey', path.join(caDir, 'ca-key.pem'),
    '-CAcreateserial', '-out', `${role}-cert.pem`, '-days', '2', '-extfile', ext], outDir);
}

export function makeTlsFiles(root: string): TlsFiles {
  const pskKey = randomBytes(32).toString('hex');
  const pskFile = path.join(root, 'keys.psk');
  fs.writeFileSync(pskFile, `alice:${pskKey}\n`, { mode: 0o600 });
  const qemuPskDir = path.join(root, 'qemu-psk');
  fs.mkdirSync(qemuPskDir);
  fs.copyFileSync(pskFile, path.join(qemuPskDir, 'keys.psk'));
  const wrongPskFile = path.join(root, 'wrong.psk');
  fs.writeFileSync(wrongPskFile, `alice:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });

  const certificatesDir = path.join(root, 'pki');
  makeCa(certificatesDir, 'sheepdog test CA');
  makeLeaf(certificatesDir, certificatesDir, 'server', '127.0.0.1');
  const clientCertificatesDir = path.join(root, 'pki-client');
  fs.mkdirSync(clientCertificatesDir);
  fs.copyFileSync(path.join(certificatesDir, 'ca-cert.pem'), path.join(clientCertificatesDir, 'ca-cert.pem'));
  const otherCaDir = path.join(root, 'pki-other');
  makeCa(otherCaDir, 'some other CA');
  const clientWithCertDir = path.join(root, 'pki-alice');
  makeLeaf(certificatesDir, clientWithCertDir, 'client', 'alice');
  fs.copyFileSync(path.join(certificatesDir, 'ca-cert.pem'), path.join(clientWithCertDir, 'ca-cert.pem'));
  const strangerCertDir = path.join(root, 'pki-mallory');
  makeLeaf(otherCaDir, strangerCertDir, 'client', 'mallory');
  fs.copyFileSync(path.join(certificatesDir, 'ca-cert.pem'), path.join(strangerCertDir, 'ca-cert.pem'));
  return { pskFile, qemuPskDir, wrongPskFile, certificatesDir, clientCertificatesDir, otherCaDir, clientWithCertDir, strangerCertDir };
}
