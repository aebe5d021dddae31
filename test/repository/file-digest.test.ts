/**
 * The SHA-256 of an XVA is computed on a worker thread while the file streams to its remote. Specified here: the digest and
 * size are those of the bytes (any chunking), and hashing a long stream holds a bounded amount of memory: the batches the
 * worker has hashed come back to be filled again instead of waiting for the worker thread's own garbage collection, which
 * kept tens of MB of dead 1 MiB batches per backup.
 */
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { digestStream } from "../../server/repository/file-digest.js";
import { reachableArrayBufferBytes } from "../support/reachable-memory.js";

const MiB = 1024 * 1024;

/** Drains a stream; answers the bytes it carried. */
async function drain(stream: Readable): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return bytes;
}

describe("digestStream", () => {
  it("gives the SHA-256 and size of the bytes however they are cut, partial last batch included", async () => {
    const data = randomBytes(5 * MiB + 12_345);
    const sizes = [1, 7, 65_536, 1_048_575, 3, 2 * MiB + 1];
    const chunks: Buffer[] = [];
    for (let offset = 0, i = 0; offset < data.length; i++) {
      const size = Math.min(sizes[i % sizes.length], data.length - offset);
      chunks.push(data.subarray(offset, offset + size));
      offset += size;
    }
    const { stream, digest } = digestStream(Readable.from(chunks));
    expect(await drain(stream)).toBe(data.length);
    expect(await digest).toEqual({ sha256: createHash("sha256").update(data).digest("hex"), size: data.length });
  });

  it("holds a bounded amount of buffer memory while it hashes 256 MiB in 64 KiB chunks", async () => {
    const chunk = randomBytes(64 * 1024);
    const count = (256 * MiB) / chunk.length;
    const expected = createHash("sha256");
    for (let i = 0; i < count; i++) expected.update(chunk);
    const before = reachableArrayBufferBytes();
    let highest = 0;
    async function* chunks() {
      for (let i = 0; i < count; i++) {
        // Every 64 chunks (4 MiB): what stays held right after a collection of this thread's heap.
        if (i % 64 === 0) highest = Math.max(highest, reachableArrayBufferBytes() - before);
        yield chunk;
      }
    }
    const { stream, digest } = digestStream(Readable.from(chunks()));
    await drain(stream);
    expect((await digest).sha256).toBe(expected.digest("hex"));
    // In flight at most 8 MiB, one batch being filled and the spares: about 18 MiB. Before the batches came back, the
    // worker held every hashed batch until its own collection (64 MiB and more).
    expect(highest).toBeLessThan(24 * MiB);
  });
});
