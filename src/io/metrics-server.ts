// `sheep --metrics`: Prometheus text at GET /metrics over plain HTTP. Bounded: a few connections,
// short timeouts, nothing but that one path.
import * as http from 'node:http';

const connectionsMax = 16;
const requestTimeoutMs = 10_000;

export interface MetricsServer {
  close(): Promise<void>;
}

export function serveMetrics(host: string, port: number, scrape: () => Promise<string>): Promise<MetricsServer> {
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    scrape().then(
      (text) => response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`),
    );
  });
  server.maxConnections = connectionsMax;
  server.requestTimeout = requestTimeoutMs;
  server.headersTimeout = requestTimeoutMs;
  server.keepAliveTimeout = requestTimeoutMs;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({ close: () => new Promise((done) => server.close(() => done())) });
    });
  });
}
