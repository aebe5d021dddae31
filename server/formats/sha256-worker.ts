import { Worker } from "node:worker_threads";

/**
 * SHA-256 on a worker thread. Hashing a multi-GiB backup on the main thread (about 1.5 GB/s with SHA-NI) stalls the event
 * loop that moves its bytes: the FULL backup benchmark fell from 1.31 to 0.94 of its baseline. On a worker the hash runs
 * beside the I/O; the main thread only copies each chunk into a transferred message (memcpy speed). One worker per
 * hasher; memory stays bounded: a caller waits once the worker is {@link MAX_IN_FLIGHT} bytes behind. (VHD block hashes
 * stay on the main thread: moved here they gained nothing measurable, the VHD stream parse being the slower part.)
 */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
let stream = createHash("sha256");
let received = 0;
parentPort.on("message", (message) => {
  if (message.type === "update") {
    stream.update(new Uint8Array(message.chunk));
    received += message.chunk.byteLength;
    // The batch goes back to be filled again: kept here, its bytes would wait for this thread's garbage collection, which
    // an almost allocation-free loop hardly ever runs (tens of MB held per hash).
    parentPort.postMessage({ type: "ack", received, chunk: message.chunk }, [message.chunk]);
  } else if (message.type === "digest") {
    parentPort.postMessage({ type: "digest", sha256: stream.digest() });
  }
});
`;

const MAX_IN_FLIGHT = 8 * 1024 * 1024;
/**
 * Chunks are gathered into batches of this size before they are posted: one message (and one wake-up of the worker) per
 * 64 KiB socket chunk cost more than the hash itself on a busy machine, where every wake-up waits for a CPU.
 */
const BATCH_BYTES = 1024 * 1024;
/** Enough spare batches for everything in flight: more would only be kept for nothing. */
const SPARE_BATCHES = MAX_IN_FLIGHT / BATCH_BYTES + 1;

export class Sha256Worker {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private sent = 0;
  private acknowledged = 0;
  private batch: Buffer | undefined;
  private batched = 0;
  /** Batches the worker has hashed and handed back, to be filled again: the hash allocates nothing once it runs. */
  private readonly spare: ArrayBuffer[] = [];
  private waiting: (() => void) | undefined;
  private finished: ((sha256: Buffer) => void) | undefined;
  private failure: Error | undefined;

  constructor() {
    this.worker.unref();
    this.worker.on("message", (message: { type: string; received?: number; chunk?: ArrayBuffer; sha256?: Uint8Array }) => {
      if (message.received !== undefined) this.acknowledged = message.received;
      if (message.chunk?.byteLength === BATCH_BYTES && this.spare.length < SPARE_BATCHES) this.spare.push(message.chunk);
      if (message.type === "digest") this.finished?.(Buffer.from(message.sha256 as Uint8Array));
      this.wake();
    });
    this.worker.on("error", (error) => {
      this.failure = error;
      this.wake();
    });
  }

  /** Streaming mode: adds a chunk to the one running hash. Resolves at once unless the worker is far behind. */
  async update(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    // Copied into the batch (the one copy there was before, into the transferred message), posted when full.
    for (let offset = 0; offset < chunk.byteLength; ) {
      // Its own ArrayBuffer (not a pool slab): transferable whole.
      this.batch ??= this.spare.length > 0 ? Buffer.from(this.spare.pop()!) : Buffer.allocUnsafeSlow(BATCH_BYTES);
      const take = Math.min(BATCH_BYTES - this.batched, chunk.byteLength - offset);
      this.batch.set(chunk.subarray(offset, offset + take), this.batched);
      this.batched += take;
      offset += take;
      if (this.batched === BATCH_BYTES) await this.post();
    }
  }

  /** Posts the batch (its whole ArrayBuffer when full, an exact copy of the used part when not). */
  private async post(): Promise<void> {
    if (!this.batch || this.batched === 0) return;
    const buffer = this.batched === BATCH_BYTES ? (this.batch.buffer as ArrayBuffer) : copyOf(this.batch.subarray(0, this.batched));
    const bytes = this.batched;
    this.batch = undefined;
    this.batched = 0;
    const sent = this.send(bytes);
    this.worker.postMessage({ type: "update", chunk: buffer }, [buffer]);
    await sent;
  }

  /** Streaming mode: the digest of everything given to {@link update}. */
  async digest(): Promise<Buffer> {
    if (this.failure) throw this.failure;
    await this.post();
    const result = new Promise<Buffer>((resolve) => (this.finished = resolve));
    this.worker.postMessage({ type: "digest" });
    return result;
  }

  /** Ends the worker (after the last digest, or when the stream failed). */
  close(): void {
    void this.worker.terminate();
  }

  private async send(bytes: number): Promise<void> {
    if (this.failure) throw this.failure;
    this.sent += bytes;
    while (this.sent - this.acknowledged > MAX_IN_FLIGHT && !this.failure) await new Promise<void>((resolve) => (this.waiting = resolve));
    if (this.failure) throw this.failure;
  }

  private wake(): void {
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve?.();
  }
}

/** One exact copy of the bytes, to transfer: cloning the view itself would copy its whole backing store (often a slab). */
function copyOf(chunk: Uint8Array): ArrayBuffer {
  return chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;
}
