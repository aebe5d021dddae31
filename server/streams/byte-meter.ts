/**
 * A pass-through that counts bytes (reporting at most every 256 KiB) and keeps the last bytes seen, so a stream's end can be
 * checked (an XVA ends with two zero tar blocks) without buffering it.
 */
import { Transform } from "node:stream";

export interface ByteMeter extends Transform {
  readonly bytes: number;
  /** The last `keepTail` bytes of the stream (fewer if it was shorter). */
  tail(): Buffer;
}

export function byteMeter(onProgress: (bytes: number, delta: number) => void, keepTail = 1024): ByteMeter {
  let bytes = 0;
  let reported = 0;
  let tail = Buffer.alloc(0);
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      tail =
        chunk.length >= keepTail ? Buffer.from(chunk.subarray(chunk.length - keepTail)) : Buffer.concat([tail, chunk]).subarray(-keepTail);
      if (bytes - reported >= 256 * 1024) {
        onProgress(bytes, bytes - reported);
        reported = bytes;
      }
      callback(null, chunk);
    },
    flush(callback) {
      if (bytes > reported) onProgress(bytes, bytes - reported);
      reported = bytes;
      callback();
    },
  }) as ByteMeter;
  Object.defineProperty(meter, "bytes", { get: () => bytes });
  meter.tail = () => tail;
  return meter;
}

/** XO's validity rule for a plain XVA: whole tar blocks, ending with two zero blocks. */
export function looksLikeCompleteTar(bytes: number, tail: Buffer): boolean {
  return bytes >= 1024 && bytes % 512 === 0 && tail.length >= 1024 && tail.subarray(-1024).every((b) => b === 0);
}
