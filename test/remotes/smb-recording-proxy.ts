import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * A TCP proxy in front of an SMB server that decodes the SMB2 header of every message both ways (the
 * client does not encrypt, so headers are plain even when signed), to check what the client really
 * sends: which commands, on which file handles, in which order, signed or not, and what the server
 * answered (interim STATUS_PENDING answers included). It can also hold the server's answers back (a
 * server that stops answering) and change bytes of them on the way (to prove signatures are checked).
 */

export const SMB2 = {
  SESSION_SETUP: 0x01,
  TREE_CONNECT: 0x03,
  CREATE: 0x05,
  CLOSE: 0x06,
  FLUSH: 0x07,
  READ: 0x08,
  WRITE: 0x09,
  QUERY_INFO: 0x10,
  SET_INFO: 0x11,
} as const;
export const STATUS_PENDING = 0x00000103;
export const FLAG_SIGNED = 0x8;
export const FLAG_ASYNC = 0x2;

/** One SMB2 message seen by the proxy. */
export interface SmbMessage {
  direction: "request" | "response";
  command: number;
  messageId: bigint;
  status: number;
  flags: number;
  /** The handle a request is about (READ, WRITE, FLUSH, CLOSE, SET_INFO, QUERY_INFO), or the one a CREATE response opened, in hex. */
  fileId?: string;
  /** The path a CREATE request opens (SMB form, "a\\b"). */
  name?: string;
  /** The information class of a SET_INFO or QUERY_INFO request (10: rename, 20: end of file; 7: file system full size). */
  infoClass?: number;
  /** The length a READ or WRITE request moves. */
  length?: number;
}

export interface SmbRecordingProxy {
  port: number;
  messages: SmbMessage[];
  /** While on, the server's answers are kept back (not lost): the client sees a server that stopped answering. */
  holdResponses(hold: boolean): void;
  /** Called on every whole response message (the SMB2 message, without the 4-byte framing) before it is passed on. */
  tamper: ((message: Buffer, decoded: SmbMessage) => void) | undefined;
  stop(): Promise<void>;
}

const HEADER = 64;

function decode(message: Buffer, direction: SmbMessage["direction"]): SmbMessage[] {
  const decoded: SmbMessage[] = [];
  let offset = 0;
  // Compound messages chain further headers through NextCommand.
  for (;;) {
    const header = message.subarray(offset);
    if (header.length < HEADER || header.readUInt32BE(0) !== 0xfe534d42) break;
    const entry: SmbMessage = {
      direction,
      command: header.readUInt16LE(12),
      messageId: header.readBigUInt64LE(24),
      status: header.readUInt32LE(8),
      flags: header.readUInt32LE(16),
    };
    const body = header.subarray(HEADER);
    const id = (at: number) => (body.length >= at + 16 ? body.subarray(at, at + 16).toString("hex") : undefined);
    if (direction === "request") {
      if (entry.command === SMB2.WRITE || entry.command === SMB2.SET_INFO || entry.command === SMB2.READ) entry.fileId = id(16);
      if (entry.command === SMB2.QUERY_INFO) entry.fileId = id(24);
      if (entry.command === SMB2.FLUSH || entry.command === SMB2.CLOSE) entry.fileId = id(8);
      if (entry.command === SMB2.SET_INFO || entry.command === SMB2.QUERY_INFO) entry.infoClass = body.readUInt8(3);
      if (entry.command === SMB2.READ || entry.command === SMB2.WRITE) entry.length = body.readUInt32LE(4);
      if (entry.command === SMB2.CREATE && body.length >= 48) {
        const nameOffset = body.readUInt16LE(44);
        entry.name = header.subarray(nameOffset, nameOffset + body.readUInt16LE(46)).toString("utf16le");
      }
    } else if (entry.command === SMB2.CREATE && entry.status === 0) {
      entry.fileId = id(64);
    }
    decoded.push(entry);
    const next = header.readUInt32LE(20);
    if (next === 0) break;
    offset += next;
  }
  return decoded;
}

/** Splits a TCP stream into NetBIOS-framed messages; calls `frame` with each whole frame (framing included). */
function framer(frame: (whole: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const length = (pending.readUInt8(1) << 16) + pending.readUInt16BE(2);
      if (pending.length < length + 4) break;
      frame(pending.subarray(0, length + 4));
      pending = pending.subarray(length + 4);
    }
  };
}

/** Starts the proxy on 127.0.0.1 and a free port, in front of `host:port`. */
export async function startSmbRecordingProxy(host: string, port: number): Promise<SmbRecordingProxy> {
  const messages: SmbMessage[] = [];
  const sockets = new Set<Socket>();
  let hold = false;
  const held: { client: Socket; frame: Buffer }[] = [];
  const proxy: SmbRecordingProxy = {
    port: 0,
    messages,
    tamper: undefined,
    holdResponses(on: boolean) {
      hold = on;
      if (!on) for (const { client, frame } of held.splice(0)) if (!client.destroyed) client.write(frame);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((client) => {
    const upstream = connect(port, host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => (socket === client ? upstream : client).destroy());
      socket.on("close", () => (socket === client ? upstream : client).destroy());
    }
    client.on(
      "data",
      framer((frame) => {
        messages.push(...decode(frame.subarray(4), "request"));
        upstream.write(frame);
      }),
    );
    upstream.on(
      "data",
      framer((frame) => {
        const copy = Buffer.from(frame);
        const decoded = decode(copy.subarray(4), "response");
        messages.push(...decoded);
        if (proxy.tamper !== undefined && decoded.length === 1) proxy.tamper(copy.subarray(4), decoded[0]);
        if (hold) held.push({ client, frame: copy });
        else client.write(copy);
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.port = (server.address() as AddressInfo).port;
  return proxy;
}
