import { type Readable, Transform, pipeline } from "node:stream";
import { Sha256Worker } from "../formats/sha256-worker.js";

/** The SHA-256 (hex) and size of a whole file, as `cairn.integrity` records an XVA's. */
export interface FileDigest {
  sha256: string;
  size: number;
}

/**
 * Passes `source` through unchanged while hashing it. `digest` resolves when the last byte has passed; if the source fails
 * or the consumer stops, `stream` fails with the source's own error and `digest` rejects (never hangs).
 */
export function digestStream(source: Readable): { stream: Readable; digest: Promise<FileDigest> } {
  const hash = new Sha256Worker();
  let size = 0;
  let settle!: { resolve: (digest: FileDigest) => void; reject: (error: unknown) => void };
  const digest = new Promise<FileDigest>((resolve, reject) => (settle = { resolve, reject }));
  digest.catch(() => undefined); // observed by the caller when it needs it; a failed write reports the error itself
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      hash.update(chunk).then(() => callback(null, chunk), callback);
    },
    flush(callback) {
      hash.digest().then((digest) => {
        hash.close();
        settle.resolve({ sha256: digest.toString("hex"), size });
        callback();
      }, callback);
    },
  });
  pipeline(source, tap, (error) => {
    if (!error) return;
    hash.close();
    settle.reject(error);
  });
  return { stream: tap, digest };
}

/**
 * The tail held back until the whole file is hashed. A consumer such as an XVA import stops at the tar trailer (two zero
 * blocks, inside the last few KiB; for a compressed XVA, somewhere in the compressed stream's last blocks): holding back
 * the last MiB keeps the trailer from it, so it sees the stream fail instead of completing an import of wrong bytes.
 */
const HELD_TAIL_BYTES = 1024 * 1024;

/**
 * Passes `source` through, checking it against the digest recorded at write time. The last {@link HELD_TAIL_BYTES} are
 * held back until the whole file is hashed, so a consumer (an XVA import) sees the stream fail instead of ending
 * normally when a byte differs: it never receives a complete, wrong file. `damaged` makes the error (the caller names
 * the file).
 */
export function verifyingStream(source: Readable, expected: FileDigest, damaged: (detail: string) => Error): Readable {
  const hash = new Sha256Worker();
  let size = 0;
  const held: Buffer[] = [];
  let heldBytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      held.push(chunk);
      heldBytes += chunk.length;
      while (held.length > 1 && heldBytes - held[0].length >= HELD_TAIL_BYTES) {
        const released = held.shift() as Buffer;
        heldBytes -= released.length;
        this.push(released);
      }
      hash.update(chunk).then(() => callback(), callback);
    },
    flush(callback) {
      hash.digest().then((digest) => {
        hash.close();
        const sha256 = digest.toString("hex");
        if (size !== expected.size) return callback(damaged(`it is ${size} bytes, ${expected.size} were written`));
        if (sha256 !== expected.sha256)
          return callback(damaged(`its SHA-256 is ${sha256}, ${expected.sha256} was recorded when it was written`));
        for (const chunk of held) this.push(chunk);
        callback();
      }, callback);
    },
  });
  pipeline(source, check, (error) => {
    if (error) hash.close();
  });
  return check;
}
