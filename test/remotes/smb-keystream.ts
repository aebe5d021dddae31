import { createCipheriv, createHash } from "node:crypto";
import { Readable } from "node:stream";

/**
 * Bytes that never repeat (an AES-CTR keystream), so that a piece written or read at the wrong offset cannot go unseen,
 * as it could with a pattern whose period divides the request size. `bytesAt` gives any range of the same sequence.
 */
const KEY = Buffer.alloc(16, 7);

function keystream(offset: number, length: number): Buffer {
  const block = Math.floor(offset / 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(block), 8);
  const cipher = createCipheriv("aes-128-ctr", KEY, iv);
  const skip = offset - block * 16;
  return cipher.update(Buffer.alloc(skip + length)).subarray(skip);
}

export function bytesAt(offset: number, length: number): Buffer {
  return keystream(offset, length);
}

/** A stream of `size` keystream bytes in `chunk`-byte pieces, and the sha256 of the whole. */
export function keystreamSource(size: number, chunk = 256 * 1024): { stream: Readable; sha256: string } {
  let position = 0;
  const stream = new Readable({
    read() {
      if (position >= size) return void this.push(null);
      const length = Math.min(chunk, size - position);
      const piece = keystream(position, length);
      position += length;
      this.push(piece);
    },
  });
  const hash = createHash("sha256");
  for (let at = 0; at < size; at += 8 * 1024 * 1024) hash.update(keystream(at, Math.min(8 * 1024 * 1024, size - at)));
  return { stream, sha256: hash.digest("hex") };
}

export async function sha256Of(stream: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest("hex");
}
