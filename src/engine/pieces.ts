// Cutting a byte range of a VDI at object boundaries: shared by the volume layer and the in-memory
// test volumes, so both split a range the same way.

export interface Piece {
  index: number;
  innerBytes: number;
  lengthBytes: number;
  /** Offset of this piece inside the caller's range. */
  bufferBytes: number;
}

/** Cuts [offset, offset+length) at object boundaries. */
export function piecesOf(offsetBytes: number, lengthBytes: number, objectBytes: number): Piece[] {
  const pieces: Piece[] = [];
  let at = offsetBytes;
  const end = offsetBytes + lengthBytes;
  while (at < end) {
    const index = Math.floor(at / objectBytes);
    const innerBytes = at - index * objectBytes;
    const take = Math.min(objectBytes - innerBytes, end - at);
    pieces.push({ index, innerBytes, lengthBytes: take, bufferBytes: at - offsetBytes });
    at += take;
  }
  return pieces;
}
