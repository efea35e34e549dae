// Counts the object I/O a sheep serves over rpc (sheep/stats.ts): a wrapper around the frame
// handler, so the handlers themselves stay unaware of it.
import type { FrameHandler } from '../rpc/server.js';
import { classifyOp, type RequestStats } from './stats.js';

export function countedHandler(stats: RequestStats, handle: FrameHandler): FrameHandler {
  return (header, payload) => {
    const kind = classifyOp(header['op']);
    if (kind === undefined) return handle(header, payload);
    return stats.count(kind.source, kind.kind, payload?.length ?? 0, () => handle(header, payload), (reply) => reply.payload?.length ?? 0);
  };
}
