// NBD over TLS against real sheep (copies 2): node 0 requires TLS (PSK and X.509), node 1 serves
// in the clear on its default address, which is loopback even with -b 0.0.0.0. Data written by
// qemu-img through TLS is read back through node 1 and `dog vdi read`; plain and wrong-key clients
// are refused while the daemon keeps serving; bad TLS options stop a sheep with one line.
// Ports 8250-8252 (sheep) and 8260-8262 (NBD) belong to this file.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, md5, portIsFree, run, startCluster, waitForPort } from './support/cluster.js';
import { makeTlsFiles, type TlsFiles } from './support/tls-creds.js';

const MiB = 1024 * 1024;
const basePort = 8250;
const nbdPorts = [8260, 8261, 8262];
const toolTimeoutMs = 90_000;

async function tool(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const result = await run(command, args, { timeoutMs: toolTimeoutMs });
  if (result.timedOut) throw new Error(`${command} ${args.join(' ')} timed out`);
  return result;
}

async function toolOk(command: string, args: string[]): Promise<string> {
  const result = await tool(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** Addresses something LISTENs on for a TCP port, from /proc/net/tcp and tcp6 (e.g. 127.0.0.1). */
function listenAddresses(port: number): string[] {
  const found: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4 || fields[3] !== '0A') continue; // 0A: LISTEN
      const [hexAddress, hexPort] = fields[1]!.split(':');
      if (parseInt(hexPort!, 16) !== port) continue;
      found.push(hexAddress!.length === 8
        ? Buffer.from(hexAddress!, 'hex').reverse().join('.') // little-endian IPv4
        : `ipv6:${hexAddress}`);
    }
  }
  return found.sort();
}

describe('NBD over TLS on a real cluster', () => {
  let c: Cluster;
  let tlsRoot: string;
  let files: TlsFiles;

  const psk = (port: number, exportName: string, pskFile = files.pskFile) =>
    `nbds://alice@127.0.0.1:${port}/${exportName}?tls-psk-file=${pskFile}`;

  beforeAll(async () => {
    tlsRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-tls-cluster-'));
    files = makeTlsFiles(tlsRoot);
    c = await startCluster({
      nodes: 2,
      copies: 2,
      basePort,
      prefix: 'nbd-tls-cluster-',
      sheepArgs: (i) => i === 0
        ? ['--nbd', `127.0.0.1:${nbdPorts[0]}`, '--nbd-tls', 'require', '--nbd-tls-psk', files.pskFile,
          '--nbd-tls-certificates', files.certificatesDir]
        : ['-b', '0.0.0.0', '-y', '127.0.0.1', '--nbd', String(nbdPorts[i])],
    });
    await waitForPort(nbdPorts[0]!);
    await waitForPort(nbdPorts[1]!);
  });

  afterAll(async () => {
    await c?.stop();
    if (tlsRoot) fs.rmSync(tlsRoot, { recursive: true, force: true });
  });

  it('NBD listens on loopback unless an address is given, even when the sheep port is on 0.0.0.0', () => {
    expect(listenAddresses(basePort + 1)).toEqual(['0.0.0.0']);
    expect(listenAddresses(nbdPorts[1]!)).toEqual(['127.0.0.1']);
    expect(listenAddresses(nbdPorts[0]!)).toEqual(['127.0.0.1']);
  });

  it('qemu-img writes over TLS-PSK; node 1 in the clear, dog vdi read and X.509 read the same bytes', async () => {
    await c.dogOk(['vdi', 'create', 'secret', '32M']);
    const data = randomBytes(32 * MiB);
    const source = path.join(tlsRoot, 'source.raw');
    fs.writeFileSync(source, data);
    await toolOk('qemu-img', [
      'convert', '-n', '-f', 'raw', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${files.qemuPskDir},username=alice`,
      '--target-image-opts', source, `driver=nbd,host=127.0.0.1,port=${nbdPorts[0]},export=secret,tls-creds=tls0`,
    ]);
    const viaNode1 = path.join(tlsRoot, 'node1.raw');
    await toolOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd://127.0.0.1:${nbdPorts[1]}/secret`, viaNode1]);
    expect(md5(fs.readFileSync(viaNode1))).toBe(md5(data));
    expect(md5((await c.dogOk(['vdi', 'read', 'secret'])).stdout)).toBe(md5(data));
    const viaX509 = path.join(tlsRoot, 'x509.raw');
    await toolOk('qemu-img', [
      'convert', '-O', 'raw', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${files.clientCertificatesDir}`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${nbdPorts[0]},export=secret,tls-creds=tls0`, viaX509,
    ]);
    expect(md5(fs.readFileSync(viaX509))).toBe(md5(data));
    const info = await toolOk('nbdinfo', [psk(nbdPorts[0]!, 'secret')]);
    expect(info).toContain('protocol: newstyle-fixed with TLS');
    expect(c.log(0)).toContain('"msg":"nbd: TLS started"');
  });

  it('a plain client gets NBD_REP_ERR_TLS_REQD, a wrong key a failed handshake; node 0 keeps serving', async () => {
    await c.dogOk(['vdi', 'create', 'other', '4M']);
    const plain = await tool('qemu-img', ['info', `nbd://127.0.0.1:${nbdPorts[0]}/other`]);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain('TLS negotiation required before option 7 (go)');
    expect(plain.stderr).toContain('server reported: TLS is required: send NBD_OPT_STARTTLS first');
    const plainList = await tool('nbdinfo', ['--list', `nbd://127.0.0.1:${nbdPorts[0]}`]);
    expect(plainList.code).not.toBe(0);
    expect(plainList.stdout).not.toContain('other');

    const wrong = await tool('nbdinfo', [psk(nbdPorts[0]!, 'other', files.wrongPskFile)]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('gnutls_handshake');
    const qemuWrong = path.join(tlsRoot, 'qemu-wrong');
    fs.mkdirSync(qemuWrong);
    fs.copyFileSync(files.wrongPskFile, path.join(qemuWrong, 'keys.psk'));
    const qemu = await tool('qemu-img', [
      'info', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${qemuWrong},username=alice`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${nbdPorts[0]},export=other,tls-creds=tls0`,
    ]);
    expect(qemu.code).not.toBe(0);
    expect(qemu.stderr).toContain('TLS handshake failed');

    expect(c.running(0)).toBe(true);
    expect(await toolOk('nbdinfo', ['--size', psk(nbdPorts[0]!, 'other')])).toBe(`${4 * MiB}\n`);
    expect(c.log(0)).toContain('TLS handshake failed: binder does not verify');
  });

  it('bad NBD TLS options stop a sheep with one line, before it claims or listens on anything', async () => {
    const badPsk = path.join(tlsRoot, 'bad.psk');
    fs.writeFileSync(badPsk, 'alice 00ff\n');
    const missing = path.join(tlsRoot, 'missing.psk');
    const cases: Array<[string[], string]> = [
      [['--nbd', `0.0.0.0:${nbdPorts[2]}`],
        'NBD on 0.0.0.0 is open to other hosts: give --nbd-tls-psk FILE or --nbd-tls-certificates DIR, or --nbd-tls off to serve it without TLS'],
      [['--nbd', String(nbdPorts[2]), '--nbd-tls', 'require'], '--nbd-tls require needs --nbd-tls-psk FILE or --nbd-tls-certificates DIR'],
      [['--nbd', String(nbdPorts[2]), '--nbd-tls-psk', missing], `cannot read TLS PSK file ${missing}: no such file`],
      [['--nbd', String(nbdPorts[2]), '--nbd-tls-psk', badPsk], `${badPsk} line 1: expected identity:hexkey`],
      [['--nbd', String(nbdPorts[2]), '--nbd-tls-certificates', tlsRoot], `cannot read TLS certificate ${path.join(tlsRoot, 'server-cert.pem')}: no such file`],
    ];
    for (const [extra, message] of cases) {
      const result = await c.startExpectExit(2, extra);
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 1, stderr: `sheep: ${message}\n` });
      expect(await portIsFree(basePort + 2)).toBe(true);
      expect(await portIsFree(nbdPorts[2]!)).toBe(true);
    }
    expect(fs.existsSync(c.storeDir(2))).toBe(false); // not even created: nothing was claimed
  });
});
