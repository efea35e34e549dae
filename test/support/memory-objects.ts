// Objects in memory, as the gateway would hold them: an ObjectIo for volume-layer unit tests.
import { SdError } from '../../src/engine/errors.js';
import type { ObjectIo } from '../../src/engine/object-io.js';
import type { Oid } from '../../src/engine/oid.js';

export class MemoryObjects implements ObjectIo {
  objects = new Map<Oid, Buffer>();
  constructor(private readonly sizeOf: (oid: Oid) => number) {}
  async read(oid: Oid, offset: number, length: number): Promise<Buffer> {
    const object = this.objects.get(oid);
    if (!object) throw new SdError('NO_OBJECT', 'no object');
    return Buffer.from(object.subarray(offset, offset + length));
  }
  async write(oid: Oid, offset: number, data: Buffer, create: boolean): Promise<void> {
    let object = this.objects.get(oid);
    if (!object) {
      if (!create && !(offset === 0 && data.length === this.sizeOf(oid))) throw new SdError('NO_OBJECT', 'no object');
      object = Buffer.alloc(this.sizeOf(oid));
      this.objects.set(oid, object);
    }
    data.copy(object, offset);
  }
  async remove(oid: Oid): Promise<void> {
    this.objects.delete(oid);
  }
  async lookup(): Promise<never> {
    throw new SdError('NO_VDI', 'unused');
  }
}
