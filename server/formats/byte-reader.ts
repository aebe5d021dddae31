import { Readable } from "node:stream";
import { readableChunks } from "./readable-chunks.js";

/**
 * Pull-style reader over a byte stream: read exactly n bytes, skip n bytes, or drain to the end.
 * Only what the caller asks for is held in memory (plus at most one source chunk), and the source is
 * only pulled when more bytes are needed, so backpressure reaches the producer.
 */
export class ByteReader {
  private readonly iterator: AsyncIterator<Buffer | Uint8Array | string>;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private done = false;
  /** Bytes consumed so far (read or skipped). */
  position = 0;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string> | Readable) {
    // A stream's chunks as they are (readable-chunks.ts): its own iterator would join those that wait into a copy.
    this.iterator = (source instanceof Readable ? readableChunks(source) : source)[Symbol.asyncIterator]();
  }

  private async fill(wanted: number): Promise<void> {
    while (this.pendingBytes < wanted && !this.done) {
      const next = await this.iterator.next();
      if (next.done) {
        this.done = true;
        break;
      }
      const value = next.value;
      const chunk =
        typeof value === "string"
          ? Buffer.from(value)
          : Buffer.isBuffer(value)
            ? value
            : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      if (chunk.length === 0) continue;
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
  }

  /** Up to `length` bytes: fewer only at the end of the stream. */
  async read(length: number): Promise<Buffer> {
    await this.fill(length);
    const take = Math.min(length, this.pendingBytes);
    let out: Buffer;
    if (this.pending.length > 0 && this.pending[0].length >= take) {
      out = this.pending[0].subarray(0, take);
      this.consumeHead(take);
    } else {
      out = Buffer.allocUnsafe(take);
      let at = 0;
      while (at < take) {
        const head = this.pending[0];
        const n = Math.min(head.length, take - at);
        head.copy(out, at, 0, n);
        at += n;
        this.consumeHead(n);
      }
    }
    this.position += take;
    return out;
  }

  /**
   * Up to `length` bytes as the source chunks' own views, in order (fewer bytes only at the end of the stream): no copy.
   * For a consumer that only reads the bytes at once (a hash), where {@link read} would copy a large range it holds whole.
   */
  async readPieces(length: number): Promise<Buffer[]> {
    await this.fill(length);
    const pieces: Buffer[] = [];
    let left = Math.min(length, this.pendingBytes);
    this.position += left;
    while (left > 0) {
      const head = this.pending[0];
      const n = Math.min(head.length, left);
      pieces.push(n === head.length ? head : head.subarray(0, n));
      this.consumeHead(n);
      left -= n;
    }
    return pieces;
  }

  /** Skips up to `length` bytes without keeping them; returns how many were skipped. */
  async skip(length: number): Promise<number> {
    let left = length;
    while (left > 0) {
      if (this.pendingBytes === 0) await this.fill(1);
      if (this.pendingBytes === 0) break;
      const n = Math.min(left, this.pending[0].length);
      this.consumeHead(n);
      left -= n;
      this.position += n;
    }
    return length - left;
  }

  /** Whether the stream has no more bytes. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.pendingBytes === 0;
  }

  /** Stops pulling from the source (releases it, e.g. destroys a Readable). */
  async close(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.done) {
      this.done = true;
      await this.iterator.return?.();
    }
  }

  private consumeHead(n: number): void {
    const head = this.pending[0];
    if (n === head.length) this.pending.shift();
    else this.pending[0] = head.subarray(n);
    this.pendingBytes -= n;
  }
}
