import { type FileHandle, type Nfs3Client, Stable } from "./nfs3.js";

/** A piece sent UNSTABLE and not yet covered by a COMMIT, kept so it can be sent again if the server lost it. */
interface Piece {
  offset: number;
  data: Buffer;
  /** The write verifier the server answered with; undefined until answered, or when pieces of one write differed. */
  verifier?: Buffer;
  /** Answered DATA_SYNC or FILE_SYNC: on stable storage already, no COMMIT needed. */
  stable: boolean;
}

/** How an {@link UnstableWriter} sends. */
export interface UnstableWriterOptions {
  /** Bytes per WRITE (the server's wtmax, capped). */
  pieceBytes: number;
  /** WRITEs in flight at once. */
  inFlight: number;
  /** Uncommitted bytes kept before a COMMIT is sent on the writer's own initiative (bounds the memory). */
  windowBytes: number;
}

/**
 * Writes to one file with UNSTABLE WRITEs, several in flight, and makes them durable with COMMIT (RFC 1813 sections 3.3.7,
 * 3.3.21 and 4.8). The server's write verifier changes when it restarts and loses unstable data: a COMMIT whose verifier
 * differs from the one a WRITE got means that WRITE's bytes may be gone, and they are sent again, FILE_SYNC. So every piece
 * is kept until a COMMIT covers it; memory stays bounded because a COMMIT is sent whenever `windowBytes` are uncommitted.
 * A failed WRITE is reported by the next call (write, commit) and the writer stays failed.
 */
export class UnstableWriter {
  /** WRITEs sent and not answered yet, with the byte range each covers. */
  private readonly sending = new Map<Promise<void>, { start: number; end: number }>();
  private uncommitted: Piece[] = [];
  private uncommittedBytes = 0;
  private failure: { error: unknown } | undefined;
  private committing: Promise<void> | undefined;

  constructor(
    private readonly nfs: Nfs3Client,
    private readonly handle: FileHandle,
    private readonly options: UnstableWriterOptions,
  ) {}

  /** Sends `data` at `offset`; resolves once every piece is sent (answers come later: {@link commit} waits for them). */
  async write(offset: number, data: Buffer): Promise<void> {
    for (let at = 0; at < data.length; at += this.options.pieceBytes) {
      const piece: Piece = { offset: offset + at, data: data.subarray(at, at + this.options.pieceBytes), stable: false };
      const end = piece.offset + piece.data.length;
      for (;;) {
        if (this.committing !== undefined) await this.committing;
        if (this.sending.size >= this.options.inFlight) {
          await Promise.race(this.sending.keys());
          continue;
        }
        // The server may apply requests in flight in any order: a WRITE waits for the earlier ones its bytes overlap.
        const overlapping = [...this.sending].filter(([, range]) => range.start < end && piece.offset < range.end).map(([sent]) => sent);
        if (overlapping.length === 0) break;
        await Promise.all(overlapping);
      }
      this.throwIfFailed();
      this.uncommitted.push(piece);
      this.uncommittedBytes += piece.data.length;
      const sent: Promise<void> = this.send(piece, Stable.UNSTABLE)
        .catch((error: unknown) => {
          this.failure ??= { error };
        })
        .finally(() => this.sending.delete(sent));
      this.sending.set(sent, { start: piece.offset, end });
      if (this.uncommittedBytes >= this.options.windowBytes) await this.commit();
    }
    this.throwIfFailed();
  }

  /** Waits for every WRITE sent, then COMMITs, sending again what the server lost meanwhile. After it, all is durable. */
  commit(): Promise<void> {
    this.committing ??= this.commitNow().finally(() => {
      this.committing = undefined;
    });
    return this.committing;
  }

  /** Waits for every WRITE sent, without committing; reports a failed one. */
  async drain(): Promise<void> {
    await Promise.all(this.sending.keys());
    this.throwIfFailed();
  }

  /** Waits for every WRITE sent and forgets their failures (the file is being abandoned or closed). */
  async settle(): Promise<void> {
    await Promise.all(this.sending.keys());
  }

  private async commitNow(): Promise<void> {
    await this.drain();
    const pieces = this.uncommitted;
    if (pieces.every((piece) => piece.stable)) return this.forget(pieces);
    const verifier = await this.nfs.commit(this.handle);
    for (const piece of pieces) {
      if (piece.stable || piece.verifier?.equals(verifier) === true) continue;
      // The server restarted between the WRITE and the COMMIT and may have lost these bytes.
      await this.send(piece, Stable.FILE_SYNC);
    }
    this.forget(pieces);
  }

  private forget(pieces: Piece[]): void {
    this.uncommitted = this.uncommitted.filter((piece) => !pieces.includes(piece));
    this.uncommittedBytes = this.uncommitted.reduce((sum, piece) => sum + piece.data.length, 0);
  }

  private async send(piece: Piece, stable: number): Promise<void> {
    let done = 0;
    let verifier: Buffer | undefined;
    let allStable = true;
    let sameVerifier = true;
    while (done < piece.data.length) {
      const answer = await this.nfs.write(this.handle, piece.offset + done, piece.data.subarray(done), stable);
      if (answer.count === 0) throw new Error(`the server stored none of ${piece.data.length - done} bytes at ${piece.offset + done}`);
      if (verifier !== undefined && !verifier.equals(answer.verifier)) sameVerifier = false;
      verifier = answer.verifier;
      if (answer.committed === Stable.UNSTABLE) allStable = false;
      done += answer.count;
    }
    piece.stable = allStable;
    piece.verifier = sameVerifier ? verifier : undefined;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}
