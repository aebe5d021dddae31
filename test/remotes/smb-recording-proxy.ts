import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * A TCP proxy in front of an SMB server that decodes the SMB2 header of every message both ways (the
 * test client neither signs nor encrypts, so headers are plain), to check what the client really
 * sends: which commands, on which file handles, in which order, and what the server answered.
 */

export const SMB2 = { CREATE: 0x05, CLOSE: 0x06, FLUSH: 0x07, WRITE: 0x09, SET_INFO: 0x11 } as const;
export const STATUS_PENDING = 0x00000103;

/** One SMB2 message seen by the proxy. */
export interface SmbMessage {
  direction: "request" | "response";
  command: number;
  messageId: bigint;
  status: number;
  /** The handle a request is about (WRITE, FLUSH, CLOSE, SET_INFO), or the one a CREATE response opened, in hex. */
  fileId?: string;
  /** The path a CREATE request opens (SMB form, "a\\b"). */
  name?: string;
  /** The information class of a SET_INFO request (10: rename). */
  infoClass?: number;
}

export interface SmbRecordingProxy {
  port: number;
  messages: SmbMessage[];
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
    };
    const body = header.subarray(HEADER);
    const id = (at: number) => (body.length >= at + 16 ? body.subarray(at, at + 16).toString("hex") : undefined);
    if (direction === "request") {
      if (entry.command === SMB2.WRITE || entry.command === SMB2.SET_INFO) entry.fileId = id(16);
      if (entry.command === SMB2.FLUSH || entry.command === SMB2.CLOSE) entry.fileId = id(8);
      if (entry.command === SMB2.SET_INFO) entry.infoClass = body.readUInt8(3);
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

/** Splits a TCP stream into NetBIOS-framed messages, decoding each. */
function recorder(direction: SmbMessage["direction"], messages: SmbMessage[]): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const length = (pending.readUInt8(1) << 16) + pending.readUInt16BE(2);
      if (pending.length < length + 4) break;
      messages.push(...decode(pending.subarray(4, length + 4), direction));
      pending = pending.subarray(length + 4);
    }
  };
}

/** Starts the proxy on 127.0.0.1 and a free port, in front of `host:port`. */
export async function startSmbRecordingProxy(host: string, port: number): Promise<SmbRecordingProxy> {
  const messages: SmbMessage[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => (socket === client ? upstream : client).destroy());
    }
    client.on("data", recorder("request", messages));
    upstream.on("data", recorder("response", messages));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    messages,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
