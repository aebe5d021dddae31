/**
 * Exact reads and forward skips over an upload body, as XAPI's readers do on its socket (`Unixext.really_read`,
 * `Tar_helpers.skip`, vhd-tool's `Channel_In`): a body that ends before a read is complete is OCaml's `End_of_file`.
 */

/** The body ended in the middle of a read (OCaml's `End_of_file`). */
export class LabEndOfFile extends Error {
  constructor(what: string, offset: number) {
    super(`End_of_file reading ${what} at offset ${offset}`);
    this.name = "LabEndOfFile";
  }
}

export class LabByteInput {
  offset = 0;
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(body: AsyncIterable<Buffer>) {
    this.iterator = body[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.iterator.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.pending = this.pending.length === 0 ? next.value : Buffer.concat([this.pending, next.value]);
    return true;
  }

  /** Exactly `length` bytes. @throws LabEndOfFile */
  async read(length: number, what: string): Promise<Buffer> {
    while (this.pending.length < length) {
      if (!(await this.fill())) throw new LabEndOfFile(what, this.offset + this.pending.length);
    }
    const out = Buffer.from(this.pending.subarray(0, length));
    this.pending = this.pending.subarray(length);
    this.offset += length;
    return out;
  }

  /** Drops bytes up to `target` (never backwards: vhd-tool's skip with a negative count fails). */
  async skipTo(target: number, what: string): Promise<void> {
    if (target < this.offset) throw new Error(`cannot seek backwards to ${what} at ${target} (already at ${this.offset})`);
    let remaining = target - this.offset;
    while (remaining > 0) {
      if (this.pending.length === 0 && !(await this.fill())) throw new LabEndOfFile(what, this.offset);
      const drop = Math.min(remaining, this.pending.length);
      this.pending = this.pending.subarray(drop);
      this.offset += drop;
      remaining -= drop;
    }
  }

  /** Whether the body has no byte left (reads ahead one chunk when needed). */
  async atEnd(): Promise<boolean> {
    return this.pending.length === 0 && !(await this.fill());
  }

  /** Reads and drops everything left, to the end of the body. */
  async drain(): Promise<void> {
    do {
      this.offset += this.pending.length;
      this.pending = Buffer.alloc(0);
    } while (await this.fill());
  }

  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}
