import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";

const CHUNK = 64 * 1024;
const PATTERN = randomBytes(CHUNK);

/** A readable of `size` bytes that records what a writer did with it (for remote tests). */
export interface TestSource {
  stream: Readable;
  /** Bytes handed to the stream so far. */
  readonly produced: number;
  /** How many times `push` said "stop" (the consumer applied backpressure). */
  readonly refusedPushes: number;
  /** sha256 of everything produced (complete once the stream ended). */
  digest(): Buffer;
  /** Resolves once `gateAt` bytes have been produced (never, without `gateAt`). */
  gateReached: Promise<void>;
  /** Lets a gated source go on. */
  release(): void;
}

/**
 * A source of `size` pseudo-random bytes in 64 KiB chunks. With `failAt`, it errors with `failure`
 * once that many bytes were produced; with `gateAt`, it stops there until `release()`.
 */
export function testSource(size: number, options: { failAt?: number; failure?: Error; gateAt?: number } = {}): TestSource {
  const hash = createHash("sha256");
  let produced = 0;
  let refusedPushes = 0;
  let released = options.gateAt === undefined;
  let onGate: () => void = () => undefined;
  let onRelease: () => void = () => undefined;
  const gateReached = new Promise<void>((resolve) => (onGate = resolve));
  const releasePromise = new Promise<void>((resolve) => (onRelease = resolve));

  function produce(stream: Readable): void {
    if (options.failAt !== undefined && produced >= options.failAt) {
      stream.destroy(options.failure ?? new Error("the test source failed on purpose"));
      return;
    }
    if (!released && options.gateAt !== undefined && produced >= options.gateAt) {
      onGate();
      // _read is not called again until we push, so the release pushes the next chunk itself.
      void releasePromise.then(() => produce(stream));
      return;
    }
    if (produced >= size) {
      stream.push(null);
      return;
    }
    const chunk = Buffer.from(PATTERN.subarray(0, Math.min(CHUNK, size - produced)));
    if (chunk.length >= 4) chunk.writeUInt32BE(produced / CHUNK, 0);
    produced += chunk.length;
    hash.update(chunk);
    if (!stream.push(chunk)) refusedPushes += 1;
  }

  const stream = new Readable({
    highWaterMark: CHUNK * 4,
    read() {
      produce(this);
    },
  });
  return {
    stream,
    get produced() {
      return produced;
    },
    get refusedPushes() {
      return refusedPushes;
    },
    digest: () => hash.copy().digest(),
    gateReached,
    release() {
      released = true;
      onRelease();
    },
  };
}

/** sha256 and length of a readable, consumed slowly enough to see whether its producer respects backpressure. */
export async function digestStream(stream: Readable): Promise<{ digest: Buffer; bytes: number; maxBuffered: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  let maxBuffered = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    maxBuffered = Math.max(maxBuffered, stream.readableLength);
    // Yield to I/O so a producer that ignored backpressure would pile data up in the buffer.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { digest: hash.digest(), bytes, maxBuffered };
}
