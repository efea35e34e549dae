// The cluster driver a sheep uses now. A sheep that was reported left while alive (it was
// stopped, then woke up) rejoins through a fresh driver instance, a new incarnation; everything
// that holds "the driver" (the VDI and admin services, the group's announcements) holds this.
import type { ClusterDriver, ClusterHandlers, JoinVerdict, Json, NodeInfo } from '../cluster/driver.js';

export type ClosableDriver = ClusterDriver & { close?(): void };

export class CurrentDriver implements ClusterDriver {
  constructor(private current: ClosableDriver) {}

  /** From now on calls go to `next`; the old driver is closed (it has stopped already). */
  replace(next: ClosableDriver): void {
    this.current.close?.();
    this.current = next;
  }

  join(self: NodeInfo, request: Json, handlers: ClusterHandlers): Promise<JoinVerdict> {
    return this.current.join(self, request, handlers);
  }

  leave(): Promise<void> {
    return this.current.leave();
  }

  notify(message: Json): Promise<void> {
    return this.current.notify(message);
  }

  block(): Promise<void> {
    return this.current.block();
  }

  unblock(message: Json): Promise<void> {
    return this.current.unblock(message);
  }

  sync(): Promise<void> {
    return this.current.sync();
  }

  close(): void {
    this.current.close?.();
  }
}
