/**
 * One NBD connection, read-only: the fixed-newstyle handshake with `NBD_OPT_GO` (falling back to `NBD_OPT_EXPORT_NAME`
 * for servers without it), then reads with any number in flight, matched to their replies by cookie (a server may answer
 * out of order). Simple replies only: structured replies are never asked for. See README.md beside this file.
 */
import { X509Certificate } from "node:crypto";
import { connect, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import { NbdError } from "./nbd-error.js";
import {
  CMD_DISC,
  CMD_READ,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  MAX_READ,
  NBD_ERRNO_NAMES,
  NBD_MAGIC,
  OLDSTYLE_MAGIC,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_STARTTLS,
  OPTION_REPLY_MAGIC,
  REP_ACK,
  REP_ERR_TLS_REQD,
  REP_ERR_UNSUP,
  REP_FLAG_ERROR,
  REP_INFO,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
} from "./nbd-protocol.js";

/** Where an export is: one `vdi_nbd_server_info` of `VDI.get_nbd_info`. */
export interface NbdTarget {
  address: string;
  port: number;
  /** Opaque; XAPI's holds a session id: a secret, never logged. */
  exportName: string;
  /**
   * PEM certificate of the server (`vdi_nbd_server_info.cert`, received over the authenticated XAPI connection): when
   * given, the connection goes TLS (`NBD_OPT_STARTTLS`) and the server must present exactly this certificate (pinned by
   * its SHA-256 fingerprint: pool hosts have self-signed certificates, and `subject` need not match the address).
   */
  cert?: string;
}

export interface NbdConnectOptions {
  /** The longest the server may stay silent during the handshake or while reads are in flight. @default 60 s */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface PendingRead {
  length: number;
  /** The reply's data as the socket's own chunks (views, in order), never copied into one buffer. */
  resolve: (pieces: Buffer[]) => void;
  reject: (error: Error) => void;
}

interface ReplyInProgress {
  read: PendingRead;
  pieces: Buffer[];
  filled: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;

export class NbdConnection {
  /** Bytes of the export. */
  size = 0;
  /** Transmission flags the server sent. */
  flags = 0;
  /** The largest read the server takes in one request. */
  maxRead = MAX_READ;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter?: { length: number; resolve: () => void };
  private handshaking = true;
  private readonly pending = new Map<bigint, PendingRead>();
  private reply?: ReplyInProgress;
  private nextCookie = 1n;
  private failure?: NbdError;
  private closing = false;
  private connected = false;
  private readonly where: string;

  /** The raw TCP socket until STARTTLS, the TLS socket over it afterwards. */
  private socket: Socket;
  private readonly onData = (chunk: Buffer) => {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.handshaking) {
      if (this.waiter !== undefined && this.buffered >= this.waiter.length) this.waiter.resolve();
    } else {
      this.parseReplies();
    }
  };

  private constructor(
    private readonly raw: Socket,
    target: NbdTarget,
  ) {
    this.socket = raw;
    this.where = `${target.address}:${target.port}`;
  }

  /** Connects and negotiates the export; an NbdError (`unreachable`, `refused`, `protocol`) when that fails. */
  static async connect(target: NbdTarget, options: NbdConnectOptions = {}): Promise<NbdConnection> {
    const socket = connect({ host: target.address, port: target.port });
    const connection = new NbdConnection(socket, target);
    connection.watch(options);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", () => {
          connection.connected = true;
          resolve();
        });
        socket.once("error", reject);
        socket.once("close", () => reject(connection.failure ?? new Error("closed")));
      });
    } catch (error) {
      socket.destroy();
      throw connection.failure ?? new NbdError("unreachable", `could not connect to the NBD server ${connection.where}`, { cause: error });
    }
    try {
      await connection.handshake(target.exportName, target.cert);
    } catch (error) {
      socket.destroy();
      throw error instanceof NbdError ? error : (connection.failure ?? error);
    }
    return connection;
  }

  /** Reads in flight on this connection. */
  get inFlight(): number {
    return this.pending.size + (this.reply === undefined ? 0 : 1);
  }

  /** `length` bytes at `offset` in one buffer (split into requests the server takes); rejects with an NbdError. */
  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.concat(await this.readPieces(offset, length));
  }

  /**
   * `length` bytes at `offset` as consecutive pieces: views of the chunks the socket received, no copy (a 2 MiB block
   * copied into a buffer of its own cost a third of the CBT + NBD path's main-thread time, most of it faulting in fresh
   * pages). Valid as long as the caller keeps them; rejects with an NbdError.
   */
  async readPieces(offset: number, length: number): Promise<Buffer[]> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`NBD read [${offset}, ${offset + length}) is outside the export of ${this.size} bytes`);
    }
    if (length <= this.maxRead) return this.request(offset, length);
    const parts: Promise<Buffer[]>[] = [];
    for (let done = 0; done < length; done += this.maxRead) parts.push(this.request(offset + done, Math.min(this.maxRead, length - done)));
    return (await Promise.all(parts)).flat();
  }

  /** Says goodbye (`NBD_CMD_DISC`) and closes; reads still in flight fail. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    this.closing = true;
    if (this.failure === undefined) this.socket.write(this.requestFrame(CMD_DISC, 0n, 0, 0));
    await new Promise<void>((resolve) => {
      this.socket.once("close", () => resolve());
      this.socket.end();
      // A server that does not close its side after DISC: do not wait for it.
      setTimeout(() => this.socket.destroy(), 2_000).unref();
    });
  }

  private request(offset: number, length: number): Promise<Buffer[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const cookie = this.nextCookie++;
    return new Promise<Buffer[]>((resolve, reject) => {
      this.pending.set(cookie, { length, resolve, reject });
      this.socket.write(this.requestFrame(CMD_READ, cookie, offset, length));
    });
  }

  private requestFrame(type: number, cookie: bigint, offset: number, length: number): Buffer {
    const frame = Buffer.alloc(28);
    frame.writeUInt32BE(REQUEST_MAGIC, 0);
    frame.writeUInt16BE(0, 4);
    frame.writeUInt16BE(type, 6);
    frame.writeBigUInt64BE(cookie, 8);
    frame.writeBigUInt64BE(BigInt(offset), 16);
    frame.writeUInt32BE(length, 24);
    return frame;
  }

  private watch(options: NbdConnectOptions): void {
    const socket = this.raw;
    socket.setNoDelay(true);
    socket.setTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    socket.on("timeout", () => {
      if (this.handshaking || this.inFlight > 0) {
        this.fail(
          new NbdError(
            "broken",
            `the NBD server ${this.where} sent nothing for ${Math.round((options.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)} s`,
          ),
        );
      }
    });
    socket.on("data", this.onData);
    socket.on("error", (error) => {
      const failure = this.connected ? "broken" : "unreachable";
      const what = this.connected ? `the NBD connection to ${this.where} failed` : `could not connect to the NBD server ${this.where}`;
      this.fail(new NbdError(failure, `${what}: ${error.message}`, { cause: error }));
    });
    socket.on("close", () => {
      if (!this.closing || this.inFlight > 0) this.fail(new NbdError("broken", `the NBD server ${this.where} closed the connection`));
      else this.fail(new NbdError("broken", `the NBD connection to ${this.where} is closed`));
    });
    const signal = options.signal;
    if (signal !== undefined) {
      const onAbort = () =>
        this.fail(new NbdError("broken", `NBD reads from ${this.where} stopped: ${String(signal.reason ?? "cancelled")}`));
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      socket.once("close", () => signal.removeEventListener("abort", onAbort));
    }
  }

  private fail(error: NbdError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.waiter?.resolve();
    // The read whose data was arriving is no longer pending (its header was taken): it fails too.
    this.reply?.read.reject(error);
    for (const read of this.pending.values()) read.reject(error);
    this.pending.clear();
    this.reply = undefined;
    this.socket.destroy();
  }

  // --- handshake -------------------------------------------------------------------------------------------------

  private async take(length: number): Promise<Buffer> {
    if (this.buffered < length && this.failure === undefined) {
      await new Promise<void>((resolve) => (this.waiter = { length, resolve }));
      this.waiter = undefined;
    }
    if (this.failure !== undefined) throw this.failure;
    return this.takeNow(length);
  }

  /** Up to `max` bytes of the first buffered chunk, as a view of it (some must be buffered). */
  private takeHeadPiece(max: number): Buffer {
    const head = this.chunks[0];
    if (head.length <= max) {
      this.chunks.shift();
      this.buffered -= head.length;
      return head;
    }
    this.chunks[0] = head.subarray(max);
    this.buffered -= max;
    return head.subarray(0, max);
  }

  private takeNow(length: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const rest = all.subarray(length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return all.subarray(0, length);
  }

  private protocolError(detail: string): NbdError {
    return new NbdError("protocol", `the NBD server ${this.where} ${detail}`);
  }

  private async handshake(exportName: string, cert: string | undefined): Promise<void> {
    const greeting = await this.take(16);
    if (!greeting.subarray(0, 8).equals(NBD_MAGIC)) throw this.protocolError("is not an NBD server (no NBDMAGIC)");
    const style = greeting.readBigUInt64BE(8);
    if (style === OLDSTYLE_MAGIC) throw this.protocolError("speaks the oldstyle protocol only (no export names)");
    if (style !== IHAVEOPT) throw this.protocolError("sent an unknown handshake magic");
    const serverFlags = (await this.take(2)).readUInt16BE(0);
    if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw this.protocolError("does not speak fixed newstyle NBD");
    const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (noZeroes ? FLAG_NO_ZEROES : 0));
    this.socket.write(clientFlags);
    if (cert !== undefined && cert !== "") await this.startTls(cert);

    const name = Buffer.from(exportName, "utf8");
    const go = Buffer.alloc(4 + name.length + 2 + 2);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    go.writeUInt16BE(1, 4 + name.length);
    go.writeUInt16BE(INFO_BLOCK_SIZE, 6 + name.length);
    this.sendOption(OPT_GO, go);
    let gotExport = false;
    for (;;) {
      const header = await this.take(20);
      if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw this.protocolError("sent a bad option reply");
      const type = header.readUInt32BE(12);
      const payload = await this.take(header.readUInt32BE(16));
      if (type === REP_ACK) break;
      if (type === REP_INFO && payload.length >= 2) {
        const info = payload.readUInt16BE(0);
        if (info === INFO_EXPORT && payload.length >= 12) {
          this.size = Number(payload.readBigUInt64BE(2));
          this.flags = payload.readUInt16BE(10);
          gotExport = true;
        } else if (info === INFO_BLOCK_SIZE && payload.length >= 14) {
          this.maxRead = Math.max(512, Math.min(MAX_READ, payload.readUInt32BE(10)));
        }
        continue;
      }
      if (type === REP_ERR_UNSUP) {
        // A server older than NBD_OPT_GO: the old way, which has no error reply (a refused name closes the connection).
        await this.exportNameOption(name, noZeroes);
        gotExport = true;
        break;
      }
      if ((type & REP_FLAG_ERROR) !== 0) {
        const why = payload.toString("utf8").trim();
        const tls = type === REP_ERR_TLS_REQD ? " (it requires TLS: the network's purpose is nbd, not insecure_nbd)" : "";
        throw new NbdError("refused", `the NBD server ${this.where} refused the export${tls}${why ? `: ${why}` : ""}`);
      }
      // Other replies (a newer server's extras) are skipped, as the protocol allows.
    }
    if (!gotExport) throw this.protocolError("gave no export size");
    this.handshaking = false;
    this.parseReplies();
  }

  /** `NBD_OPT_STARTTLS`, then TLS over the same socket; the server must present `cert`. */
  private async startTls(cert: string): Promise<void> {
    let expected: string;
    try {
      expected = new X509Certificate(cert).fingerprint256;
    } catch (error) {
      throw new NbdError("refused", `the certificate XAPI gave for the NBD server ${this.where} does not parse`, { cause: error });
    }
    this.sendOption(OPT_STARTTLS, Buffer.alloc(0));
    const header = await this.take(20);
    if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw this.protocolError("sent a bad option reply");
    const type = header.readUInt32BE(12);
    const why = (await this.take(header.readUInt32BE(16))).toString("utf8").trim();
    if (type !== REP_ACK) throw new NbdError("refused", `the NBD server ${this.where} refused TLS${why ? `: ${why}` : ""}`);
    this.raw.off("data", this.onData);
    // The identity check is the pinning below: a pool host's certificate is self-signed and names the host, not the address.
    const secure = connectTls({ socket: this.raw, rejectUnauthorized: false });
    try {
      await new Promise<void>((resolve, reject) => {
        secure.once("secureConnect", resolve);
        secure.once("error", reject);
        secure.once("close", () => reject(new Error("closed during the TLS handshake")));
      });
    } catch (error) {
      throw (
        this.failure ??
        new NbdError("refused", `the TLS handshake with the NBD server ${this.where} failed: ${(error as Error).message}`, { cause: error })
      );
    }
    const presented = secure.getPeerCertificate().fingerprint256;
    if (presented !== expected) {
      secure.destroy();
      throw new NbdError("refused", `the NBD server ${this.where} presented a certificate other than the one XAPI gave (${presented})`);
    }
    secure.on("error", (error) =>
      this.fail(new NbdError("broken", `the NBD connection to ${this.where} failed: ${error.message}`, { cause: error })),
    );
    secure.on("data", this.onData);
    this.socket = secure;
  }

  private sendOption(option: number, data: Buffer): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([header, data]));
  }

  private async exportNameOption(name: Buffer, noZeroes: boolean): Promise<void> {
    this.sendOption(OPT_EXPORT_NAME, name);
    let answer: Buffer;
    try {
      answer = await this.take(noZeroes ? 10 : 134);
    } catch (error) {
      throw new NbdError("refused", `the NBD server ${this.where} refused the export (it closed the connection)`, { cause: error });
    }
    this.size = Number(answer.readBigUInt64BE(0));
    this.flags = answer.readUInt16BE(8);
  }

  // --- transmission ----------------------------------------------------------------------------------------------

  private parseReplies(): void {
    while (this.failure === undefined) {
      if (this.reply !== undefined) {
        if (this.buffered === 0) return;
        const reply = this.reply;
        const piece = this.takeHeadPiece(reply.read.length - reply.filled);
        reply.pieces.push(piece);
        reply.filled += piece.length;
        if (reply.filled === reply.read.length) {
          this.reply = undefined;
          reply.read.resolve(reply.pieces);
        }
        continue;
      }
      if (this.buffered < 16) return;
      const header = this.takeNow(16);
      if (header.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) {
        this.fail(this.protocolError("sent a reply that is not a simple reply"));
        return;
      }
      const errno = header.readUInt32BE(4);
      const cookie = header.readBigUInt64BE(8);
      const read = this.pending.get(cookie);
      if (read === undefined) {
        this.fail(this.protocolError("answered a request that was not made"));
        return;
      }
      this.pending.delete(cookie);
      if (errno !== 0) {
        const name = NBD_ERRNO_NAMES[errno] ?? `errno ${errno}`;
        read.reject(new NbdError("read-failed", `the NBD server ${this.where} failed a read of ${read.length} bytes: ${name}`, { errno }));
        continue;
      }
      if (read.length === 0) {
        read.resolve([]);
        continue;
      }
      this.reply = { read, pieces: [], filled: 0 };
    }
  }
}
