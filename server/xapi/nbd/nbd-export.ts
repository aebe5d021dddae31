/**
 * An NBD export read through several connections at once (as XO and Storware do against xapi-nbd: one connection is
 * bound by its round trips, a few keep the host's disk busy), and its blocks read in order with a window of reads in
 * flight, so that a writer consuming them in order never waits for a round trip.
 */
import { NbdConnection, type NbdConnectOptions, type NbdTarget } from "./nbd-connection.js";
import { NbdError } from "./nbd-error.js";

export interface NbdExportOptions extends NbdConnectOptions {
  /** Connections opened to the server. @default 2 */
  connections?: number;
}

export class NbdExport {
  /** Bytes read from the server so far (what the pool served). */
  bytesRead = 0;

  private constructor(private readonly connections: NbdConnection[]) {}

  /** Opens `connections` connections to the export; if any fails, the others are closed and its NbdError thrown. */
  static async open(target: NbdTarget, options: NbdExportOptions = {}): Promise<NbdExport> {
    const count = Math.max(1, Math.floor(options.connections ?? 2));
    const attempts = await Promise.allSettled(Array.from({ length: count }, () => NbdConnection.connect(target, options)));
    const opened = attempts.flatMap((attempt) => (attempt.status === "fulfilled" ? [attempt.value] : []));
    const failed = attempts.find((attempt) => attempt.status === "rejected");
    if (failed !== undefined) {
      await Promise.all(opened.map((connection) => connection.close()));
      throw failed.reason;
    }
    const sizes = new Set(opened.map((connection) => connection.size));
    if (sizes.size > 1) {
      await Promise.all(opened.map((connection) => connection.close()));
      throw new NbdError("protocol", `the NBD server ${target.address}:${target.port} gave different sizes for one export`);
    }
    return new NbdExport(opened);
  }

  get size(): number {
    return this.connections[0].size;
  }

  get connectionCount(): number {
    return this.connections.length;
  }

  /** `length` bytes at `offset`, on the connection with the fewest reads in flight. */
  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.concat(await this.readPieces(offset, length));
  }

  /** {@link read} as the received chunks' own views (NbdConnection.readPieces): no copy. */
  async readPieces(offset: number, length: number): Promise<Buffer[]> {
    let chosen = this.connections[0];
    for (const connection of this.connections) if (connection.inFlight < chosen.inFlight) chosen = connection;
    const pieces = await chosen.readPieces(offset, length);
    this.bytesRead += length;
    return pieces;
  }

  /**
   * The blocks `indexes` (sorted) of `blockSize` bytes, in that order, each as consecutive pieces (views of what the
   * sockets received), with up to `window` reads in flight across the connections. The last block of an export whose size
   * is not a multiple is padded with zeros. The first failed read ends the iteration with its NbdError.
   */
  async *blocks(indexes: readonly number[], blockSize: number, window = 8): AsyncGenerator<{ index: number; data: Buffer[] }> {
    const reads: Array<Promise<Buffer[]>> = [];
    let next = 0;
    const start = () => {
      const index = indexes[next++];
      const offset = index * blockSize;
      const length = Math.max(0, Math.min(blockSize, this.size - offset));
      const read = this.readPieces(offset, length).then((pieces) =>
        length === blockSize ? pieces : [...pieces, Buffer.alloc(blockSize - length)],
      );
      // Awaited in order below; until then a failure must not count as unhandled.
      read.catch(() => {});
      reads.push(read);
    };
    for (let position = 0; position < indexes.length; position++) {
      while (next < indexes.length && next < position + Math.max(1, window)) start();
      const data = await reads[position];
      reads[position] = Promise.resolve([]); // let the block go once handed over
      yield { index: indexes[position], data };
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.connections.map((connection) => connection.close()));
  }
}
