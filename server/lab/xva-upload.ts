import { Readable, pipeline } from "node:stream";
import { CompressionError, createDecompressor, detectCompression } from "../formats/compression.js";
import { XvaError } from "../formats/xva/index.js";
import { TAR_BLOCK, decodeTarHeader, isZeroBlock, tarPadding } from "../formats/xva/tar.js";

/** Follows the tar framing of a plain XVA as its bytes go by, to see both zero blocks of its trailer. */
class TarEndWatch {
  /** Bytes seen so far. */
  position = 0;
  /** Both zero blocks of the trailer have been seen. */
  complete = false;
  /** Why the framing could not be followed (readXva fails on the same bytes). */
  lost: XvaError | undefined;
  private nextHeader = 0;
  private block: Buffer[] = [];
  private blockBytes = 0;
  private zeroBlocks = 0;

  see(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.complete && this.lost === undefined) {
      if (this.position < this.nextHeader) {
        const skip = Math.min(this.nextHeader - this.position, chunk.length - at);
        at += skip;
        this.position += skip;
        continue;
      }
      const take = Math.min(TAR_BLOCK - this.blockBytes, chunk.length - at);
      this.block.push(chunk.subarray(at, at + take));
      this.blockBytes += take;
      at += take;
      this.position += take;
      if (this.blockBytes < TAR_BLOCK) continue;
      const block = Buffer.concat(this.block, TAR_BLOCK);
      this.block = [];
      this.blockBytes = 0;
      this.nextHeader = this.position;
      if (isZeroBlock(block)) {
        this.complete = ++this.zeroBlocks === 2;
      } else if (this.zeroBlocks > 0) {
        this.lost = new XvaError("XVA_BAD_TAR", "a lone zero block: the tar trailer is two zero blocks", {
          offset: this.position - TAR_BLOCK,
        });
      } else {
        try {
          const { size } = decodeTarHeader(block, this.position - TAR_BLOCK);
          this.nextHeader += size + tarPadding(size);
        } catch (error) {
          this.lost = error as XvaError;
        }
      }
    }
  }
}

/** A decompressor's failure as an XvaError: a compressed stream that stops short (gzip, zstd) is a truncated XVA. */
function decompressionFailure(error: unknown): Error {
  if (error instanceof XvaError) return error;
  if (
    (error as NodeJS.ErrnoException).code === "Z_BUF_ERROR" ||
    (error instanceof CompressionError && /premature end/.test(error.message))
  ) {
    return new XvaError("XVA_TRUNCATED", `the compressed stream ended early (${(error as Error).message})`);
  }
  if (error instanceof CompressionError || /^Z_/.test(String((error as NodeJS.ErrnoException).code)))
    return new XvaError("XVA_BAD_COMPRESSION", (error as Error).message);
  return error as Error;
}

/**
 * An XVA upload (`PUT /import`) as the plain tar that `readXva` parses, with the end of the archive checked as XAPI's tar
 * reader checks it. readXva stops at the first zero block of the tar trailer; a body cut after it, or a compressed XVA
 * whose compressed stream stops short once the tar is out, would be taken for complete. So the lab undoes gzip and zstd
 * here (readXva then sees a plain tar), follows the tar framing, and {@link finish} asks for the rest.
 *
 * `tar`'s `return()` (readXva stopping at its `end`) leaves the body open for {@link finish}; {@link close} releases it.
 */
export class XvaUpload {
  readonly tar: AsyncIterable<Buffer>;
  private readonly watch = new TarEndWatch();
  private readonly raw: AsyncIterator<Buffer>;
  private plain: AsyncIterator<Buffer> | undefined;
  private decompressing: Readable | undefined;
  private ended = false;
  private closed = false;

  constructor(body: AsyncIterable<Buffer>) {
    this.raw = body[Symbol.asyncIterator]();
    this.tar = {
      [Symbol.asyncIterator]: () => ({
        next: () => this.next(),
        return: async () => ({ done: true, value: undefined }),
      }),
    };
  }

  /**
   * Once readXva has yielded `end`: reads on to the trailer's second zero block (a compressed XVA: to the end of its
   * compressed stream, which the decompressor checks). @throws XvaError XVA_TRUNCATED when the body ends before.
   */
  async finish(): Promise<void> {
    while (!this.watch.complete || (this.decompressing !== undefined && !this.ended)) {
      if (this.watch.lost !== undefined) throw this.watch.lost;
      const next = await this.next();
      if (next.done) break;
    }
    if (this.watch.lost !== undefined) throw this.watch.lost;
    if (!this.watch.complete)
      throw new XvaError("XVA_TRUNCATED", "the stream ended before the second zero block of the tar trailer", {
        offset: this.watch.position,
      });
  }

  /**
   * Releases the body: what the client still sends is drained, a decompressor stopped. Not awaited: a read still pending
   * (a decompressor reads ahead) ends with the client's next bytes or its close.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.decompressing?.destroy();
    this.raw.return?.().catch(() => undefined);
  }

  private async next(): Promise<IteratorResult<Buffer>> {
    if (this.ended || this.closed) return { done: true, value: undefined };
    let next: IteratorResult<Buffer>;
    try {
      this.plain ??= await this.open();
      next = await this.plain.next();
    } catch (error) {
      throw decompressionFailure(error);
    }
    if (next.done) this.ended = true;
    else this.watch.see(next.value);
    return next;
  }

  /** The plain tar: the body itself, or its decompression (by the magic of its first bytes, as readXva does). */
  private async open(): Promise<AsyncIterator<Buffer>> {
    const head: Buffer[] = [];
    let headBytes = 0;
    let rawEnded = false;
    while (headBytes < 4) {
      const next = await this.raw.next();
      if (next.done) {
        rawEnded = true;
        break;
      }
      head.push(next.value);
      headBytes += next.value.length;
    }
    const raw = this.raw;
    async function* replay(): AsyncGenerator<Buffer> {
      yield* head;
      if (!rawEnded) for (let next = await raw.next(); !next.done; next = await raw.next()) yield next.value;
    }
    const decompressor = createDecompressor(detectCompression(Buffer.concat(head)));
    if (decompressor === undefined) return replay();
    this.decompressing = pipeline(Readable.from(replay(), { objectMode: false }), decompressor, () => undefined) as unknown as Readable;
    return this.decompressing[Symbol.asyncIterator]();
  }
}
