import { Worker } from "node:worker_threads";

/**
 * SHA-256 on a worker thread. Hashing a multi-GiB backup on the main thread (about 1.5 GB/s with SHA-NI) stalls the event
 * loop that moves its bytes: the FULL backup benchmark fell from 1.31 to 0.94 of its baseline. On a worker the hash runs
 * beside the I/O; the main thread only copies each chunk into a transferred message (memcpy speed). One worker per
 * hasher at a time; memory stays bounded: a caller waits once the worker is {@link MAX_IN_FLIGHT} bytes behind. (VHD block
 * hashes stay on the main thread: moved here, one digest per 2 MiB block, the delta benchmark got slower, twice: DELTA
 * ratio 0.53-0.54 against 0.61-0.70, peak RSS 204-210 against 192-196 MB; the copies and wake-ups cost more than the hash.)
 *
 * A thread whose hash ended with its digest serves the next hasher: starting one costs 20-30 ms of CPU and up to 50 ms
 * before it answers, at the start of every XVA written, verified or copied (a job of many small VMs, a verify of a whole
 * remote). At most {@link IDLE_THREADS} wait, each for {@link IDLE_MS}: an idle thread is 10 MB of RSS. A hasher stopped
 * before its digest ends its thread: what it still had queued must never reach the next hash.
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
    // Ready for the next hasher this thread serves.
    stream = createHash("sha256");
    received = 0;
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
/** Threads kept for the next hashers (a job's VMs backed up side by side each hash their XVA). */
const IDLE_THREADS = 2;
/** How long an idle thread waits for a next hasher before it ends. */
const IDLE_MS = 30_000;

interface IdleThread {
  worker: Worker;
  timer: NodeJS.Timeout;
  /** Drops the thread from the idle ones if it fails while it waits (and keeps that error from going uncaught). */
  onError: () => void;
}
const idleThreads: IdleThread[] = [];

function takeIdleThread(): Worker | undefined {
  const idle = idleThreads.pop();
  if (idle === undefined) return undefined;
  clearTimeout(idle.timer);
  idle.worker.off("error", idle.onError);
  return idle.worker;
}

/** Keeps a thread whose last hash ended with its digest (nothing of it left queued), or ends it when enough wait. */
function leaveIdle(worker: Worker): void {
  if (idleThreads.length >= IDLE_THREADS) {
    void worker.terminate();
    return;
  }
  const forget = () => {
    const at = idleThreads.indexOf(idle);
    if (at >= 0) idleThreads.splice(at, 1);
    clearTimeout(idle.timer);
  };
  const idle: IdleThread = {
    worker,
    timer: setTimeout(() => {
      forget();
      void worker.terminate();
    }, IDLE_MS).unref(),
    onError: forget,
  };
  worker.on("error", idle.onError);
  idleThreads.push(idle);
}

/** Threads waiting for a hasher (what the tests check). */
export function idleSha256Threads(): number {
  return idleThreads.length;
}

export class Sha256Worker {
  private readonly worker = takeIdleThread() ?? new Worker(WORKER_SOURCE, { eval: true });
  /** The thread's id, to tell whether two hashers shared one. */
  readonly threadId = this.worker.threadId;
  private digested = false;
  private closed = false;
  private sent = 0;
  private acknowledged = 0;
  private batch: Buffer | undefined;
  private batched = 0;
  /** Batches the worker has hashed and handed back, to be filled again: the hash allocates nothing once it runs. */
  private readonly spare: ArrayBuffer[] = [];
  private waiting: (() => void) | undefined;
  private finished: { resolve: (sha256: Buffer) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;

  private readonly onMessage = (message: { type: string; received?: number; chunk?: ArrayBuffer; sha256?: Uint8Array }) => {
    if (message.received !== undefined) this.acknowledged = message.received;
    if (message.chunk?.byteLength === BATCH_BYTES && this.spare.length < SPARE_BATCHES) this.spare.push(message.chunk);
    if (message.type === "digest") {
      this.digested = true;
      this.finished?.resolve(Buffer.from(message.sha256 as Uint8Array));
    }
    this.wake();
  };
  private readonly onError = (error: Error) => {
    this.failure = error;
    // A digest already asked for would otherwise wait for an answer that can no longer come.
    this.finished?.reject(error);
    this.wake();
  };

  constructor() {
    this.worker.unref();
    this.worker.on("message", this.onMessage);
    this.worker.on("error", this.onError);
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
    if (this.failure) throw this.failure;
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
    if (this.failure) throw this.failure; // closed or failed while the last batch waited
    const result = new Promise<Buffer>((resolve, reject) => (this.finished = { resolve, reject }));
    this.worker.postMessage({ type: "digest" });
    return result;
  }

  /**
   * Lets the thread go (after the digest, or when the stream failed): to the next hasher when the hash ended with its
   * digest, else it ends. The hasher is unusable afterwards.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const reusable = this.digested && !this.failure;
    // From here on nothing of this hasher may reach the thread: it may be hashing for another one.
    this.failure ??= new Error("this SHA-256 hasher was closed");
    this.spare.length = 0;
    this.batch = undefined;
    this.worker.off("message", this.onMessage);
    this.worker.off("error", this.onError);
    if (reusable) leaveIdle(this.worker);
    else void this.worker.terminate();
    this.finished?.reject(this.failure); // a digest already answered stays answered
    this.wake();
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
