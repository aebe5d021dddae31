/**
 * The lab's NBD server: what `xapi-nbd` serves on a pool host (port 10809 there, any port here), read-only, on the export
 * names `VDI.get_nbd_info` hands out (`/<vdi uuid>?session_id=<session ref>`, checked as xapi-nbd checks them). Protocol
 * notes: NBD.md beside this file. Plain NBD (a network with purpose `insecure_nbd`), or TLS through `NBD_OPT_STARTTLS` with
 * the lab's certificate, required once a network has the purpose `nbd` (as xapi-nbd decides it).
 */
import { createServer, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { LabTls } from "./http-server.js";
import type { LabPool } from "./pool-state.js";

export const NBD = {
  MAGIC: Buffer.from("NBDMAGIC"),
  IHAVEOPT: 0x49484156454f5054n,
  OPTION_REPLY_MAGIC: 0x3e889045565a9n,
  REQUEST_MAGIC: 0x25609513,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  FLAG_FIXED_NEWSTYLE: 1,
  FLAG_NO_ZEROES: 2,
  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  OPT_LIST: 3,
  OPT_STARTTLS: 5,
  OPT_INFO: 6,
  OPT_GO: 7,
  REP_ACK: 1,
  REP_INFO: 3,
  REP_ERR_UNSUP: 0x80000001,
  REP_ERR_POLICY: 0x80000002,
  REP_ERR_INVALID: 0x80000003,
  REP_ERR_TLS_REQD: 0x80000005,
  REP_ERR_UNKNOWN: 0x80000006,
  INFO_EXPORT: 0,
  INFO_BLOCK_SIZE: 3,
  TFLAG_HAS_FLAGS: 1,
  TFLAG_READ_ONLY: 2,
  TFLAG_CAN_MULTI_CONN: 0x100,
  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_DISC: 2,
  CMD_FLUSH: 3,
  CMD_TRIM: 4,
  CMD_CACHE: 5,
  CMD_WRITE_ZEROES: 6,
  EPERM: 1,
  EIO: 5,
  EINVAL: 22,
} as const;

/** The largest read served in one request (the protocol's usual limit: clients split larger ones). */
export const NBD_MAX_REQUEST = 32 * 1024 * 1024;
const MAX_OPTION_LENGTH = 64 * 1024;
/** Bytes of replies a connection may have queued before it reads the next request. */
const NBD_SEND_QUEUE = 8 * 1024 * 1024;
const TRANSMISSION_FLAGS = NBD.TFLAG_HAS_FLAGS | NBD.TFLAG_READ_ONLY | NBD.TFLAG_CAN_MULTI_CONN;

interface Endpoint {
  address: string;
  port: number;
  /** PEM certificate when the server speaks TLS (STARTTLS). */
  cert?: string;
}

const endpoints = new WeakMap<LabPool, Endpoint>();

/** Where the pool's NBD server listens (undefined while none runs): read by `VDI.get_nbd_info`. */
export function nbdEndpointOf(pool: LabPool): Endpoint | undefined {
  return endpoints.get(pool);
}

interface Export {
  location: string;
  size: number;
}

class ConnectionClosed extends Error {}

/** Reads exact byte counts from a socket (the handshake and requests are fixed-size frames). */
class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiting?: { length: number; resolve: (data: Buffer) => void; reject: (error: Error) => void };
  private closed = false;
  private readonly onData = (chunk: Buffer) => {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.deliver();
  };
  private readonly onEnd = () => {
    this.closed = true;
    this.deliver();
  };

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
  }

  /** Stops reading the socket (STARTTLS: the TLS layer reads it from now on). */
  detach(): void {
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
  }

  read(length: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiting = { length, resolve, reject };
      this.deliver();
    });
  }

  private deliver(): void {
    const waiting = this.waiting;
    if (waiting === undefined) return;
    if (this.buffered >= waiting.length) {
      this.waiting = undefined;
      const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
      const rest = all.subarray(waiting.length);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      waiting.resolve(all.subarray(0, waiting.length));
    } else if (this.closed) {
      this.waiting = undefined;
      waiting.reject(new ConnectionClosed("the client closed the connection"));
    }
  }
}

export class LabNbdServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly dropAll = () => {
    for (const socket of this.sockets) socket.destroy();
  };

  /** `tls`: the host's certificate, for STARTTLS; required from clients while a network has the purpose `nbd`. */
  constructor(
    private readonly pool: LabPool,
    private readonly tls?: LabTls,
  ) {
    this.server = createServer((socket) => this.accept(socket));
    pool.on("unreachable", this.dropAll);
  }

  /** XAPI's xapi-nbd serves TLS only on a network of purpose `nbd`: the lab asks for it as soon as one has it. */
  private tlsRequired(): boolean {
    return this.tls !== undefined && this.pool.store.all("network").some((network) => (network.record.purpose as string[]).includes("nbd"));
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const address = this.server.address();
    const bound = typeof address === "object" && address !== null ? address.port : port;
    endpoints.set(this.pool, { address: host, port: bound, ...(this.tls ? { cert: String(this.tls.cert) } : {}) });
    return bound;
  }

  async close(): Promise<void> {
    endpoints.delete(this.pool);
    this.pool.off("unreachable", this.dropAll);
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    if (this.pool.faults.isUnreachable()) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {}); // a client going away mid-reply is its business
    this.serve(socket).catch(() => socket.destroy());
  }

  private async serve(raw: Socket): Promise<void> {
    const channel = { socket: raw, reader: new FrameReader(raw) };
    const { socket, reader } = channel;
    const greeting = Buffer.alloc(18);
    NBD.MAGIC.copy(greeting, 0);
    greeting.writeBigUInt64BE(NBD.IHAVEOPT, 8);
    greeting.writeUInt16BE(NBD.FLAG_FIXED_NEWSTYLE | NBD.FLAG_NO_ZEROES, 16);
    socket.write(greeting);
    const clientFlags = (await reader.read(4)).readUInt32BE(0);
    if ((clientFlags & ~(NBD.FLAG_FIXED_NEWSTYLE | NBD.FLAG_NO_ZEROES)) !== 0) throw new Error("unknown client flags");
    const noZeroes = (clientFlags & NBD.FLAG_NO_ZEROES) !== 0;
    const chosen = await this.negotiate(channel, noZeroes);
    if (chosen === undefined) return;
    await this.transmit(channel.socket, channel.reader, chosen);
  }

  /**
   * The option haggling; the export to serve, or undefined when the client aborted. STARTTLS swaps the channel's socket
   * and reader for the TLS ones.
   */
  private async negotiate(channel: { socket: Socket; reader: FrameReader }, noZeroes: boolean): Promise<Export | undefined> {
    let secure = false;
    for (;;) {
      const { socket, reader } = channel;
      const header = await reader.read(16);
      if (header.readBigUInt64BE(0) !== NBD.IHAVEOPT) throw new Error("bad option magic");
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > MAX_OPTION_LENGTH) throw new Error("option too long");
      const data = length > 0 ? await reader.read(length) : Buffer.alloc(0);
      const reply = (type: number, payload: Buffer = Buffer.alloc(0)) => {
        const frame = Buffer.alloc(20);
        frame.writeBigUInt64BE(NBD.OPTION_REPLY_MAGIC, 0);
        frame.writeUInt32BE(option, 8);
        frame.writeUInt32BE(type >>> 0, 12);
        frame.writeUInt32BE(payload.length, 16);
        socket.write(Buffer.concat([frame, payload]));
      };
      const error = (type: number, message: string) => reply(type, Buffer.from(message));
      if (!secure && option !== NBD.OPT_STARTTLS && option !== NBD.OPT_ABORT && this.tlsRequired()) {
        // The protocol's rule for a TLS-only server; NBD_OPT_EXPORT_NAME has no error reply: the connection closes.
        if (option === NBD.OPT_EXPORT_NAME) throw new Error("TLS required");
        error(NBD.REP_ERR_TLS_REQD, "this NBD server requires TLS (the network's purpose is nbd): NBD_OPT_STARTTLS first");
        continue;
      }
      switch (option) {
        case NBD.OPT_EXPORT_NAME: {
          const chosen = this.resolve(data.toString("utf8"));
          if (typeof chosen === "string") throw new Error(chosen); // the old style has no way to say why: close
          const answer = Buffer.alloc(noZeroes ? 10 : 134);
          answer.writeBigUInt64BE(BigInt(chosen.size), 0);
          answer.writeUInt16BE(TRANSMISSION_FLAGS, 8);
          socket.write(answer);
          return chosen;
        }
        case NBD.OPT_ABORT:
          reply(NBD.REP_ACK);
          socket.end();
          return undefined;
        case NBD.OPT_LIST:
          error(NBD.REP_ERR_POLICY, "exports are not listed: ask XAPI (VDI.get_nbd_info) for a VDI's export name");
          break;
        case NBD.OPT_STARTTLS: {
          if (this.tls === undefined) {
            error(NBD.REP_ERR_UNSUP, "this lab serves plain NBD only (start it with tls for the purpose nbd)");
            break;
          }
          if (secure) {
            error(NBD.REP_ERR_INVALID, "TLS is already on");
            break;
          }
          reply(NBD.REP_ACK);
          reader.detach();
          const tlsSocket = new TLSSocket(socket, { isServer: true, key: this.tls.key, cert: this.tls.cert });
          tlsSocket.on("error", () => socket.destroy());
          channel.socket = tlsSocket;
          channel.reader = new FrameReader(tlsSocket);
          secure = true;
          break;
        }
        case NBD.OPT_INFO:
        case NBD.OPT_GO: {
          if (data.length < 6) {
            error(NBD.REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO");
            break;
          }
          const nameLength = data.readUInt32BE(0);
          if (data.length < 4 + nameLength + 2) {
            error(NBD.REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO");
            break;
          }
          const name = data.subarray(4, 4 + nameLength).toString("utf8");
          const count = data.readUInt16BE(4 + nameLength);
          const requests = new Set<number>();
          for (let i = 0; i < count && 4 + nameLength + 2 + 2 * i + 2 <= data.length; i++)
            requests.add(data.readUInt16BE(6 + nameLength + 2 * i));
          const chosen = this.resolve(name);
          if (typeof chosen === "string") {
            error(NBD.REP_ERR_UNKNOWN, chosen);
            break;
          }
          const info = Buffer.alloc(12);
          info.writeUInt16BE(NBD.INFO_EXPORT, 0);
          info.writeBigUInt64BE(BigInt(chosen.size), 2);
          info.writeUInt16BE(TRANSMISSION_FLAGS, 10);
          reply(NBD.REP_INFO, info);
          if (requests.has(NBD.INFO_BLOCK_SIZE)) {
            const sizes = Buffer.alloc(14);
            sizes.writeUInt16BE(NBD.INFO_BLOCK_SIZE, 0);
            sizes.writeUInt32BE(1, 2);
            sizes.writeUInt32BE(4096, 6);
            sizes.writeUInt32BE(NBD_MAX_REQUEST, 10);
            reply(NBD.REP_INFO, sizes);
          }
          reply(NBD.REP_ACK);
          if (option === NBD.OPT_GO) return chosen;
          break;
        }
        default:
          // Structured replies, meta contexts, extended headers: optional, and not offered.
          error(NBD.REP_ERR_UNSUP, `option ${option} is not supported by the lab`);
      }
    }
  }

  /** The export an export name stands for, or why there is none. */
  private resolve(name: string): Export | string {
    const [path, query = ""] = name.split("?", 2);
    const session = new URLSearchParams(query).get("session_id");
    if (session === null || !this.pool.sessions.isValid(session)) return "the export name carries no valid session_id";
    const uuid = path.replace(/^\//, "");
    const vdi = this.pool.store.all("VDI").find((object) => object.record.uuid === uuid);
    if (vdi === undefined) return `no VDI ${uuid}`;
    if (vdi.record.type === "cbt_metadata") return `VDI ${uuid} holds CBT metadata only`;
    const location = vdi.record.location as string;
    return { location, size: this.pool.disks.virtualSize(location) };
  }

  private async transmit(socket: Socket, reader: FrameReader, chosen: Export): Promise<void> {
    let served = 0;
    const simpleReply = (handle: Buffer, error: number, data?: Buffer) => {
      const header = Buffer.alloc(16);
      header.writeUInt32BE(NBD.SIMPLE_REPLY_MAGIC, 0);
      header.writeUInt32BE(error, 4);
      handle.copy(header, 8);
      socket.write(header);
      if (data === undefined) return;
      // The `nbd_drop_after_bytes` fault: the connection breaks in the middle of a reply, as a network cut does.
      const limit = this.pool.faults.state.nbdDropAfterBytes;
      if (limit !== undefined && served + data.length > limit) {
        socket.write(data.subarray(0, Math.max(0, limit - served)));
        served = limit;
        socket.destroy();
        return;
      }
      served += data.length;
      socket.write(data);
    };
    for (;;) {
      let request: Buffer;
      try {
        request = await reader.read(28);
      } catch (error) {
        if (error instanceof ConnectionClosed) return;
        throw error;
      }
      if (request.readUInt32BE(0) !== NBD.REQUEST_MAGIC) throw new Error("bad request magic");
      const type = request.readUInt16BE(6);
      const handle = Buffer.from(request.subarray(8, 16));
      const offset = request.readBigUInt64BE(16);
      const length = request.readUInt32BE(24);
      switch (type) {
        case NBD.CMD_READ: {
          if (length > NBD_MAX_REQUEST || offset + BigInt(length) > BigInt(chosen.size)) {
            simpleReply(handle, NBD.EINVAL);
            break;
          }
          let data: Buffer;
          try {
            data = await this.pool.disks.read(chosen.location, Number(offset), length);
          } catch {
            simpleReply(handle, NBD.EIO);
            break;
          }
          simpleReply(handle, 0, data);
          if (socket.destroyed) return;
          // Let a few replies queue (the next disk read overlaps the send), but not without bound.
          if (socket.writableLength > NBD_SEND_QUEUE) {
            await new Promise((resolve) => {
              socket.once("drain", resolve);
              socket.once("close", resolve);
            });
          }
          break;
        }
        case NBD.CMD_DISC:
          socket.end();
          return;
        case NBD.CMD_WRITE:
          await reader.read(length);
          simpleReply(handle, NBD.EPERM);
          break;
        case NBD.CMD_TRIM:
        case NBD.CMD_WRITE_ZEROES:
          simpleReply(handle, NBD.EPERM);
          break;
        case NBD.CMD_FLUSH:
        case NBD.CMD_CACHE:
          simpleReply(handle, 0);
          break;
        default:
          simpleReply(handle, NBD.EINVAL);
      }
    }
  }
}
