/**
 * ONC RPC version 2 (RFC 5531) over TCP with record marking (RFC 5531 section 11): one connection, many calls in flight,
 * replies matched to calls by xid, a time limit per call, and a fresh connection on the next call after any loss.
 * Credentials are AUTH_NONE or AUTH_SYS (RFC 5531 appendix A); verifiers are AUTH_NONE.
 */
import { randomInt } from "node:crypto";
import { type Socket, connect } from "node:net";
import { hostname } from "node:os";
import { XdrReader, XdrWriter } from "./xdr.js";

/** AUTH_SYS identity sent with every call. */
export interface AuthSys {
  uid: number;
  gid: number;
}

/** Where and what an {@link RpcClient} calls. */
export interface RpcClientOptions {
  host: string;
  port: number;
  program: number;
  version: number;
  /** AUTH_SYS credentials; AUTH_NONE without them (the portmapper needs none). */
  auth?: AuthSys;
  /** Time allowed to connect and for each call, in ms. */
  timeoutMs: number;
}

/**
 * A failure below the NFS layer: the connection (Node's own codes: ECONNREFUSED, ECONNRESET, ETIMEDOUT...) or the RPC
 * reply (PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR, RPC_MISMATCH, AUTH_ERROR).
 */
export class RpcError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "RpcError";
  }
}

const CALL = 0;
const REPLY = 1;
const MSG_ACCEPTED = 0;
const AUTH_NONE = 0;
const AUTH_SYS = 1;
const LAST_FRAGMENT = 0x80000000;
const ACCEPT_STATS = ["SUCCESS", "PROG_UNAVAIL", "PROG_MISMATCH", "PROC_UNAVAIL", "GARBAGE_ARGS", "SYSTEM_ERR"];
const AUTH_STATS = ["AUTH_OK", "AUTH_BADCRED", "AUTH_REJECTEDCRED", "AUTH_BADVERF", "AUTH_REJECTEDVERF", "AUTH_TOOWEAK"];
/** A reply larger than this is a framing error, not data: READs ask for at most a few MiB. */
const MAX_RECORD = 64 * 1024 * 1024;

interface Pending {
  resolve(reader: XdrReader): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  procedure: number;
}

/** One program/version at one address. Calls may be issued concurrently; each resolves with a reader at its results. */
export class RpcClient {
  private socket: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextXid = randomInt(0, 0x7fffffff);
  private readonly credential: Buffer[];
  private chunks: Buffer[] = [];
  private buffered = 0;
  private fragments: Buffer[] = [];
  private fragmentsLength = 0;
  private closed = false;

  constructor(private readonly options: RpcClientOptions) {
    const credential = new XdrWriter();
    if (options.auth === undefined) {
      credential.uint32(AUTH_NONE).uint32(0);
    } else {
      const body = new XdrWriter()
        .uint32(Math.floor(Date.now() / 1000))
        .string(hostname().slice(0, 255))
        .uint32(options.auth.uid)
        .uint32(options.auth.gid)
        .uint32(0);
      credential.uint32(AUTH_SYS).opaque(Buffer.concat(body.buffers()));
    }
    credential.uint32(AUTH_NONE).uint32(0); // the verifier
    this.credential = [Buffer.concat(credential.buffers())];
  }

  get address(): string {
    return `${this.options.host}:${this.options.port}`;
  }

  /** Sends one call; resolves with a reader positioned at the procedure's results. */
  async call(procedure: number, args?: XdrWriter, timeoutMs = this.options.timeoutMs): Promise<XdrReader> {
    if (this.closed) throw new RpcError("ECONNRESET", "the RPC client is closed");
    const socket = await this.connected();
    const xid = this.nextXid;
    this.nextXid = (this.nextXid + 1) >>> 0;
    const header = new XdrWriter()
      .uint32(xid)
      .uint32(CALL)
      .uint32(2)
      .uint32(this.options.program)
      .uint32(this.options.version)
      .uint32(procedure);
    const parts = [...header.buffers(), ...this.credential, ...(args?.buffers() ?? [])];
    const length = parts.reduce((sum, part) => sum + part.length, 0);
    const mark = Buffer.allocUnsafe(4);
    mark.writeUInt32BE((LAST_FRAGMENT | length) >>> 0, 0);
    return new Promise<XdrReader>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(xid);
        reject(new RpcError("ETIMEDOUT", `no answer from ${this.address} within ${timeoutMs} ms`));
        // A call lost on a stream transport means the connection is no longer trustworthy: start afresh.
        this.drop(socket, new RpcError("ETIMEDOUT", `the connection to ${this.address} stopped answering`));
      }, timeoutMs);
      this.pending.set(xid, { resolve, reject, timer, procedure });
      socket.cork();
      socket.write(mark);
      for (const part of parts) socket.write(part);
      socket.uncork();
    });
  }

  /** Closes the connection; calls in flight fail with ECONNRESET. A closed client refuses further calls. */
  close(): void {
    this.closed = true;
    if (this.socket !== undefined) this.drop(this.socket, new RpcError("ECONNRESET", "the RPC client was closed"));
  }

  private connected(): Promise<Socket> {
    if (this.socket !== undefined) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: this.options.host, port: this.options.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new RpcError("ETIMEDOUT", `could not connect to ${this.address} within ${this.options.timeoutMs} ms`));
      }, this.options.timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", reject);
        this.attach(socket);
        resolve(socket);
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    }).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private attach(socket: Socket): void {
    this.socket = socket;
    this.chunks = [];
    this.buffered = 0;
    this.fragments = [];
    this.fragmentsLength = 0;
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      try {
        this.parse();
      } catch (error) {
        this.drop(socket, error instanceof RpcError ? error : new RpcError("EPROTO", `bad reply from ${this.address}`, { cause: error }));
      }
    });
    socket.on("error", (error) => this.drop(socket, error));
    socket.on("close", () => this.drop(socket, new RpcError("ECONNRESET", `the connection to ${this.address} was closed`)));
  }

  /** Fails every call in flight on `socket` and forgets it, so that the next call connects again. */
  private drop(socket: Socket, error: Error): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    socket.destroy();
    for (const [xid, call] of this.pending) {
      clearTimeout(call.timer);
      this.pending.delete(xid);
      call.reject(error);
    }
  }

  private take(length: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    const taken = joined.subarray(0, length);
    const rest = joined.subarray(length);
    this.chunks = rest.length === 0 ? [] : [rest];
    this.buffered = rest.length;
    return taken;
  }

  private parse(): void {
    while (this.buffered >= 4) {
      const head = this.chunks[0].length >= 4 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
      const mark = head.readUInt32BE(0);
      const length = mark & 0x7fffffff;
      if (length + this.fragmentsLength > MAX_RECORD)
        throw new RpcError("EPROTO", `a reply of over ${MAX_RECORD} bytes from ${this.address}`);
      if (this.buffered < 4 + length) return;
      this.take(4);
      this.fragments.push(this.take(length));
      this.fragmentsLength += length;
      if ((mark & LAST_FRAGMENT) === 0) continue;
      const record = this.fragments.length === 1 ? this.fragments[0] : Buffer.concat(this.fragments, this.fragmentsLength);
      this.fragments = [];
      this.fragmentsLength = 0;
      this.dispatch(record);
    }
  }

  private dispatch(record: Buffer): void {
    const reader = new XdrReader(record);
    const xid = reader.uint32();
    const call = this.pending.get(xid);
    // A late reply to a call that timed out: nobody waits for it.
    if (call === undefined) return;
    this.pending.delete(xid);
    clearTimeout(call.timer);
    try {
      if (reader.uint32() !== REPLY) throw new RpcError("EPROTO", `a call instead of a reply from ${this.address}`);
      if (reader.uint32() === MSG_ACCEPTED) {
        reader.uint32(); // verifier flavor
        reader.opaque(400);
        const status = reader.uint32();
        if (status === 0) return call.resolve(reader);
        const name = ACCEPT_STATS[status] ?? `accept_stat ${status}`;
        const range = status === 2 ? ` (the server speaks versions ${reader.uint32()} to ${reader.uint32()})` : "";
        throw new RpcError(
          name,
          `${this.address} refused procedure ${call.procedure} of program ${this.options.program} v${this.options.version}: ${name}${range}`,
        );
      }
      const reject = reader.uint32();
      if (reject === 0) {
        throw new RpcError(
          "RPC_MISMATCH",
          `${this.address} does not speak RPC version 2 (it speaks ${reader.uint32()} to ${reader.uint32()})`,
        );
      }
      const auth = reader.uint32();
      throw new RpcError("AUTH_ERROR", `${this.address} refused the credentials: ${AUTH_STATS[auth] ?? `auth_stat ${auth}`}`);
    } catch (error) {
      call.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }
}
