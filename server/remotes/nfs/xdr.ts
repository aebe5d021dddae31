/**
 * XDR (RFC 4506): big-endian 4-byte units, 64-bit "hyper" integers, opaque data padded to a multiple of 4.
 * Just the types ONC RPC, MOUNT and NFSv3 use. Large opaque data (WRITE payloads) is kept by reference, not copied.
 */

/** Builds an XDR body as a list of buffers: small fields go to a growing scratch buffer, large data by reference. */
export class XdrWriter {
  private readonly parts: Buffer[] = [];
  private scratch = Buffer.allocUnsafe(256);
  private used = 0;
  private total = 0;

  private room(bytes: number): void {
    if (this.used + bytes <= this.scratch.length) return;
    this.flushScratch();
    this.scratch = Buffer.allocUnsafe(Math.max(256, bytes));
  }

  private flushScratch(): void {
    if (this.used === 0) return;
    this.parts.push(this.scratch.subarray(0, this.used));
    this.scratch = this.scratch.subarray(this.used);
    this.used = 0;
  }

  uint32(value: number): this {
    this.room(4);
    this.scratch.writeUInt32BE(value >>> 0, this.used);
    this.used += 4;
    this.total += 4;
    return this;
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  /** An unsigned hyper; `number` up to 2^53 is enough for offsets and sizes. */
  uint64(value: number | bigint): this {
    this.room(8);
    this.scratch.writeBigUInt64BE(BigInt(value), this.used);
    this.used += 8;
    this.total += 8;
    return this;
  }

  /** Fixed-length opaque (a verifier): no length word. */
  fixed(data: Uint8Array): this {
    this.room(data.length);
    this.scratch.set(data, this.used);
    this.used += data.length;
    this.total += data.length;
    return this.pad(data.length);
  }

  /** Variable-length opaque: length word, bytes, padding. Data of 1 KiB and more is referenced, not copied. */
  opaque(data: Uint8Array): this {
    this.uint32(data.length);
    if (data.length < 1024) return this.fixed(data);
    this.flushScratch();
    this.parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.total += data.length;
    return this.pad(data.length);
  }

  string(value: string): this {
    return this.opaque(Buffer.from(value, "utf8"));
  }

  private pad(length: number): this {
    const padding = (4 - (length % 4)) % 4;
    if (padding === 0) return this;
    this.room(padding);
    this.scratch.fill(0, this.used, this.used + padding);
    this.used += padding;
    this.total += padding;
    return this;
  }

  get length(): number {
    return this.total;
  }

  /** The encoded body, as buffers to send in order. */
  buffers(): Buffer[] {
    this.flushScratch();
    return this.parts;
  }
}

/** Thrown when a reply is shorter than its own fields say: a broken server or a framing bug, never a user error. */
export class XdrError extends Error {
  constructor(detail: string) {
    super(`malformed XDR reply: ${detail}`);
    this.name = "XdrError";
  }
}

/** Reads XDR fields from one buffer, in order. */
export class XdrReader {
  private offset: number;

  constructor(
    private readonly buffer: Buffer,
    offset = 0,
  ) {
    this.offset = offset;
  }

  private need(bytes: number): void {
    if (this.offset + bytes > this.buffer.length) {
      throw new XdrError(`needs ${bytes} bytes at offset ${this.offset}, has ${this.buffer.length - this.offset}`);
    }
  }

  uint32(): number {
    this.need(4);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  bool(): boolean {
    return this.uint32() !== 0;
  }

  /** An unsigned hyper as a number (exact up to 2^53: sizes and offsets of real files). */
  uint64(): number {
    this.need(8);
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return Number(value);
  }

  /** An unsigned hyper kept exact (cookies are opaque 64-bit values). */
  uint64Big(): bigint {
    this.need(8);
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  /** Fixed-length opaque, as a view (no copy). */
  fixed(length: number): Buffer {
    this.need(length);
    const data = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length + ((4 - (length % 4)) % 4);
    return data;
  }

  /** Variable-length opaque, as a view into the reply (no copy). */
  opaque(max = Number.MAX_SAFE_INTEGER): Buffer {
    const length = this.uint32();
    if (length > max) throw new XdrError(`opaque of ${length} bytes exceeds its limit of ${max}`);
    return this.fixed(length);
  }

  string(max?: number): string {
    return this.opaque(max).toString("utf8");
  }

  skip(bytes: number): void {
    this.need(bytes);
    this.offset += bytes;
  }

  get remaining(): number {
    return this.buffer.length - this.offset;
  }
}
