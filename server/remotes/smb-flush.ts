import { createRequire } from "node:module";

/**
 * SMB2 FLUSH for `@tryjsky/v9u-smb2` 1.1.0, which has no such request: its forge knows a fixed list of
 * messages, and its response parser crashes on any command it has no structure for. FLUSH asks the
 * server to write a file's data (or a folder's entries) to stable storage; Samba answers it with
 * fsync(2) ("strict sync", on by default), Windows with FlushFileBuffers.
 *
 * Two pieces reach into the library's internals (pinned version, as `smb-client.ts` does):
 * - the request is built with the library's message class, given the FLUSH layout by hand, and
 *   written on its socket with the NetBIOS framing its private sender uses;
 * - its message parser is wrapped once so that a FLUSH response (and only that) is parsed here.
 */

const require = createRequire(import.meta.url);

interface SmbMessage {
  headers: Record<string, unknown>;
  response: Record<string, unknown>;
  structure: unknown;
  getHeaders(): Record<string, unknown>;
  getBuffer(connection: unknown): Buffer;
  parseBuffer(buffer: Buffer): void;
}
interface SmbMessageClass {
  new (options?: { headers?: Record<string, unknown>; request?: Record<string, unknown> }): SmbMessage;
  prototype: SmbMessage;
}
interface NtStatus {
  code: string;
  message: string;
}

const SMB2Message = require("@tryjsky/v9u-smb2/lib/tools/smb2-message.js") as SmbMessageClass;
const ntStatus = require("@tryjsky/v9u-smb2/lib/tools/ms_erref.js") as {
  getStatus(value: number): NtStatus;
  getErrorMessage(status: NtStatus): string;
};

/** The connection fields of the library this module uses. */
interface Connection {
  SessionId: unknown;
  TreeId: unknown;
  ProcessId: unknown;
  newResponse: boolean;
  socket: { write(buffer: Buffer): boolean };
  responses: Record<string, SmbMessage>;
  responsesCB: Record<string, (message: SmbMessage) => void>;
}

const FLUSH_COMMAND = 0x0007;
const STATUS_PENDING = 0x00000103;
const HEADER_LENGTH = 64;

/** MS-SMB2 2.2.17 and 2.2.18, in the library's structure notation. */
const FLUSH_STRUCTURE = {
  request: [
    ["StructureSize", 2, 24],
    ["Reserved1", 2, 0],
    ["Reserved2", 4, 0],
    ["FileId", 16],
  ],
  response: [
    ["StructureSize", 2],
    ["Reserved", 2],
  ],
};

// The library's parser looks the command up in a private table and throws on FLUSH (inside the
// socket's data handler, so the whole process would fail). A FLUSH response is parsed here instead:
// the dispatcher needs only MessageId, and the callback below only Status.
const parseBuffer = SMB2Message.prototype.parseBuffer;
SMB2Message.prototype.parseBuffer = function (this: SmbMessage, buffer: Buffer): void {
  if (buffer.length < HEADER_LENGTH || buffer.readUInt16LE(12) !== FLUSH_COMMAND) return parseBuffer.call(this, buffer);
  this.headers = {
    Command: "FLUSH",
    Status: buffer.subarray(8, 12),
    Flags: buffer.subarray(16, 20),
    MessageId: buffer.subarray(24, 28),
  };
  this.structure = FLUSH_STRUCTURE;
  this.response = { StructureSize: buffer.subarray(HEADER_LENGTH, HEADER_LENGTH + 2) };
};

/** Writes one request on the connection's socket, framed as the library's own sender does. */
function send(connection: Connection, message: SmbMessage): string {
  const body = message.getBuffer(connection); // also assigns the message id
  const frame = Buffer.alloc(body.length + 4);
  frame.writeUInt8((body.length >> 16) & 0xff, 1);
  frame.writeUInt16BE(body.length & 0xffff, 2);
  body.copy(frame, 4);
  connection.newResponse = false;
  connection.socket.write(frame);
  const id = Buffer.alloc(4);
  id.writeUInt32LE(message.getHeaders().MessageId as number, 0);
  return id.toString("hex");
}

/** Calls `handle` with the response to message `id`, now if it already came, else when it comes. */
function onResponse(connection: Connection, id: string, handle: (message: SmbMessage) => void): void {
  const early = connection.responses[id];
  if (early === undefined) {
    connection.responsesCB[id] = handle;
    return;
  }
  delete connection.responses[id];
  handle(early);
}

/**
 * Sends FLUSH for an open handle (a file opened for writing, or a folder opened with add-file
 * access) on a connected library client (`connection`), and calls back once the server has stored
 * it. Errors carry the NT status as `code`, like the library's own. Samba may first answer
 * STATUS_PENDING (its fsync took longer than 0.5 ms) and send the real answer later under the same
 * message id: that interim answer is waited past, which the library does not do for its own requests.
 */
export function sendFlush(connection: unknown, file: { FileId: Buffer }, callback: (error: Error | null) => void): void {
  const client = connection as Connection;
  const message = new SMB2Message({
    headers: { Command: "FLUSH", SessionId: client.SessionId, TreeId: client.TreeId, ProcessId: client.ProcessId },
    request: { FileId: file.FileId },
  });
  message.structure = FLUSH_STRUCTURE; // the library's table has none for FLUSH
  const id = send(client, message);
  const handle = (response: SmbMessage): void => {
    const value = (response.getHeaders().Status as Buffer).readUInt32LE(0);
    // The library's dispatcher forgets the callback right after calling it: wait again once it is done.
    if (value === STATUS_PENDING) return queueMicrotask(() => onResponse(client, id, handle));
    if (value === 0) return callback(null);
    const status = ntStatus.getStatus(value);
    callback(Object.assign(new Error(ntStatus.getErrorMessage(status)), { code: status.code }));
  };
  onResponse(client, id, handle);
}
