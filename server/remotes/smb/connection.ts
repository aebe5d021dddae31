import { createHash, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { aesCmac, hmacSha256, smb3Kdf } from "./crypto.js";
import { authenticateMessage, negotiateMessage } from "./ntlm.js";
import { SmbConnectionError, SmbStatusError, STATUS } from "./status.js";

/**
 * One SMB2/3 connection with one authenticated session and one tree connect (MS-SMB2 3.2): the transport framing,
 * message ids and credits, several requests in flight, interim STATUS_PENDING answers, signing, and a time limit per
 * request. What goes in the requests' bodies is `client.ts`'s business. See PROTOCOL.md for what is sent and why.
 */

export const COMMAND = {
  NEGOTIATE: 0x00,
  SESSION_SETUP: 0x01,
  LOGOFF: 0x02,
  TREE_CONNECT: 0x03,
  TREE_DISCONNECT: 0x04,
  CREATE: 0x05,
  CLOSE: 0x06,
  FLUSH: 0x07,
  READ: 0x08,
  WRITE: 0x09,
  QUERY_DIRECTORY: 0x0e,
  QUERY_INFO: 0x10,
  SET_INFO: 0x11,
} as const;

const COMMAND_NAMES = Object.fromEntries(Object.entries(COMMAND).map(([name, value]) => [value, name])) as Record<number, string>;

export const DIALECT = { SMB202: 0x0202, SMB210: 0x0210, SMB300: 0x0300, SMB302: 0x0302, SMB311: 0x0311 } as const;
const DIALECTS = [DIALECT.SMB202, DIALECT.SMB210, DIALECT.SMB300, DIALECT.SMB302, DIALECT.SMB311];

const HEADER = 64;
const PROTOCOL_ID = 0xfe534d42;
const FLAG_ASYNC = 0x2;
const FLAG_SIGNED = 0x8;
const SIGNING_ENABLED = 0x1;
const SIGNING_REQUIRED = 0x2;
const CAP_LARGE_MTU = 0x4;
const SESSION_FLAG_GUEST = 0x1;
const SESSION_FLAG_NULL = 0x2;
/** MessageId of unsolicited server messages (oplock and lease breaks): there is no request waiting for them. */
const UNSOLICITED = 0xffffffffffffffffn;
/** One credit pays for this many bytes of payload (MS-SMB2 3.1.5.2). */
const CREDIT_UNIT = 65536;
/** Credits we try to keep at hand: enough for several 1 MiB requests in flight. */
const CREDIT_TARGET = 512;
/** STATUS_NETWORK_NAME_DELETED, STATUS_USER_SESSION_DELETED, STATUS_NETWORK_SESSION_EXPIRED. */
const SESSION_LOST = new Set([0xc00000c9, 0xc0000203, 0xc000035c]);
/** Largest SMB2 message we accept from the server (a read of 8 MiB plus headers). */
const MAX_FRAME = 16 * 1024 * 1024 + 4096;

export interface SmbConnectionOptions {
  host: string;
  port: number;
  share: string;
  domain: string;
  username: string;
  password: string;
  /** Time allowed for one request (connecting, and each answer, an interim STATUS_PENDING restarting the count). */
  timeoutMs: number;
  /** Sign every request even where the server does not require it. @default false */
  alwaysSign?: boolean;
}

/** A server's answer: the whole SMB2 message (offsets in bodies count from its first byte) and what the header says. */
export interface SmbResponse {
  status: number;
  command: number;
  message: Buffer;
}

/** Counts of what the connection saw, for tests and measurements. */
export interface SmbConnectionStats {
  /** Interim STATUS_PENDING answers waited past, per command name. */
  pending: Record<string, number>;
  /** Requests that were sent signed. */
  signedRequests: number;
  /** Responses whose signature was checked. */
  verifiedResponses: number;
}

interface Outstanding {
  command: number;
  resolve(response: SmbResponse): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  /** Whether the request was signed: then so must its final answer be. */
  signed: boolean;
}

interface RequestOptions {
  /** Bytes of payload the request carries or asks for (READ length, WRITE length, an output buffer): sets the credit charge. */
  payload?: number;
  /** Data sent after the body (WRITE), without copying it into the body. */
  data?: Buffer;
  /** Statuses other than SUCCESS that are answers, not failures. */
  accept?: readonly number[];
  /** Sign this request whatever the session's rule (TREE_CONNECT on 3.1.1). */
  sign?: boolean;
}

type SigningAlgorithm = "HMAC-SHA256" | "AES-CMAC";

export class SmbConnection {
  readonly options: SmbConnectionOptions;
  readonly stats: SmbConnectionStats = { pending: {}, signedRequests: 0, verifiedResponses: 0 };
  dialect = 0;
  maxReadSize = 65536;
  maxWriteSize = 65536;
  maxTransactSize = 65536;
  private socket: Socket | undefined;
  private received: Buffer[] = [];
  private receivedBytes = 0;
  private nextMessageId = 0n;
  private credits = 1;
  private multiCredit = false;
  private readonly waitingForCredits: { charge: number; go(): void }[] = [];
  private readonly outstanding = new Map<bigint, Outstanding>();
  private sessionId = 0n;
  private treeId = 0;
  private signingKey: Buffer | undefined;
  private signingAlgorithm: SigningAlgorithm = "HMAC-SHA256";
  private signAll = false;
  private serverRequiresSigning = false;
  private preauthHash: Buffer = Buffer.alloc(64);
  private failure: Error | undefined;
  private readonly closeListeners: (() => void)[] = [];

  private constructor(options: SmbConnectionOptions) {
    this.options = options;
  }

  /** Connects, negotiates, authenticates and connects to the share; fails with the first error on the way. */
  static async open(options: SmbConnectionOptions): Promise<SmbConnection> {
    const connection = new SmbConnection(options);
    try {
      await connection.connectSocket();
      await connection.negotiate();
      await connection.sessionSetup();
      await connection.treeConnect();
      return connection;
    } catch (error) {
      connection.destroy(error as Error);
      throw error;
    }
  }

  /** Whether the connection can still carry requests. */
  get usable(): boolean {
    return this.failure === undefined;
  }

  /** Whether requests after the session setup are signed. */
  get signing(): boolean {
    return this.signAll;
  }

  /** Calls `listener` once when the connection ends, whatever the reason. */
  onClose(listener: () => void): void {
    if (this.failure !== undefined) listener();
    else this.closeListeners.push(listener);
  }

  private connectSocket(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = connect({ host: this.options.host, port: this.options.port, noDelay: true });
      this.socket = socket;
      const timer = setTimeout(() => {
        reject(new SmbConnectionError("ETIMEDOUT", `no connection to the SMB server within ${this.options.timeoutMs} ms`));
        socket.destroy();
      }, this.options.timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
        this.destroy(error);
      });
      socket.on("close", () => this.destroy(new SmbConnectionError("ECONNRESET", "the SMB server closed the connection")));
      socket.on("data", (chunk: Buffer) => this.receive(chunk));
    });
  }

  /** Ends the connection; every request still waiting fails with `error` (or a plain "closed"). Idempotent. */
  destroy(error?: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error ?? new SmbConnectionError("ECONNRESET", "the SMB connection was closed");
    this.socket?.destroy();
    for (const [id, request] of this.outstanding) {
      clearTimeout(request.timer);
      this.outstanding.delete(id);
      request.reject(this.failure);
    }
    for (const waiter of this.waitingForCredits.splice(0)) waiter.go();
    for (const listener of this.closeListeners.splice(0)) listener();
  }

  /** Logs off politely (best effort, waiting a second at most), then closes the socket. */
  async close(): Promise<void> {
    if (this.failure !== undefined) return;
    if (this.sessionId !== 0n) {
      const body = Buffer.alloc(4);
      body.writeUInt16LE(4, 0);
      let timer: NodeJS.Timeout | undefined;
      const patience = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 1000);
        timer.unref();
      });
      await Promise.race([this.request(COMMAND.LOGOFF, body).catch(() => undefined), patience]);
      clearTimeout(timer);
    }
    this.destroy();
  }

  // ---- framing and dispatch ----

  private receive(chunk: Buffer): void {
    this.received.push(chunk);
    this.receivedBytes += chunk.length;
    while (this.receivedBytes >= 4) {
      const head = this.received[0].length >= 4 ? this.received[0] : Buffer.concat(this.received);
      const length = head.readUInt32BE(0) & 0xffffff;
      if (head[0] !== 0 || length > MAX_FRAME) {
        this.destroy(new SmbConnectionError("EPROTO", "the SMB server sent a malformed frame"));
        return;
      }
      if (this.receivedBytes < length + 4) return;
      const all = this.received.length === 1 ? this.received[0] : Buffer.concat(this.received);
      const frame = all.subarray(4, 4 + length);
      const rest = all.subarray(4 + length);
      this.received = rest.length > 0 ? [rest] : [];
      this.receivedBytes = rest.length;
      try {
        this.handleFrame(frame);
      } catch (error) {
        this.destroy(error as Error);
        return;
      }
    }
  }

  private handleFrame(frame: Buffer): void {
    for (let offset = 0; ; ) {
      const rest = frame.subarray(offset);
      if (rest.length < HEADER || rest.readUInt32BE(0) !== PROTOCOL_ID) {
        // 0xFD 'SMB' would be an encrypted (transform) message: this client never asks for encryption.
        throw new SmbConnectionError("EPROTO", "the SMB server sent a message this client does not understand (encrypted or not SMB2)");
      }
      const next = rest.readUInt32LE(20);
      this.handleMessage(next === 0 ? rest : rest.subarray(0, next));
      if (next === 0) return;
      offset += next;
    }
  }

  private handleMessage(message: Buffer): void {
    const messageId = message.readBigUInt64LE(24);
    const flags = message.readUInt32LE(16);
    const status = message.readUInt32LE(8);
    this.grant(message.readUInt16LE(14));
    if (messageId === UNSOLICITED) return; // no oplocks or leases are asked for; a break needs no answer then
    const request = this.outstanding.get(messageId);
    if (request === undefined) return; // the answer to a request that timed out and was given up
    if (status === STATUS.PENDING && (flags & FLAG_ASYNC) !== 0) {
      // MS-SMB2 3.2.5.1.5: an interim answer; the final one follows under the same MessageId (with the AsyncId).
      const name = COMMAND_NAMES[request.command] ?? String(request.command);
      this.stats.pending[name] = (this.stats.pending[name] ?? 0) + 1;
      request.timer.refresh();
      return;
    }
    clearTimeout(request.timer);
    this.outstanding.delete(messageId);
    if ((flags & FLAG_SIGNED) !== 0 && this.signingKey !== undefined) {
      if (!this.verify(message)) {
        const error = new SmbConnectionError("EPROTO", "an SMB answer had a wrong signature: the connection is not trusted any more");
        request.reject(error);
        throw error;
      }
      this.stats.verifiedResponses++;
    } else if (request.signed && status !== STATUS.PENDING && this.signingKey !== undefined && status === STATUS.SUCCESS) {
      // MS-SMB2 3.2.5.1.3: the answer to a signed request must be signed.
      const error = new SmbConnectionError("EPROTO", "the SMB server did not sign its answer to a signed request");
      request.reject(error);
      throw error;
    }
    request.resolve({ status, command: message.readUInt16LE(12), message });
  }

  // ---- credits ----

  private grant(credits: number): void {
    this.credits += credits;
    while (this.waitingForCredits.length > 0 && this.credits >= this.waitingForCredits[0].charge) {
      const waiter = this.waitingForCredits.shift();
      if (waiter === undefined) break;
      this.credits -= waiter.charge;
      waiter.go();
    }
  }

  /** The credit charge of a request moving `payload` bytes (MS-SMB2 3.2.4.1.5); 2.0.2 has no multi-credit requests. */
  private chargeOf(payload: number): number {
    if (!this.multiCredit) return 1;
    return Math.max(1, Math.ceil(payload / CREDIT_UNIT));
  }

  private takeCredits(charge: number): Promise<void> {
    if (this.waitingForCredits.length === 0 && this.credits >= charge) {
      this.credits -= charge;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waitingForCredits.push({ charge, go: resolve }));
  }

  // ---- requests ----

  /**
   * Sends one request and resolves with the server's final answer. A status other than SUCCESS (and those in
   * `accept`) rejects with an {@link SmbStatusError}; no final answer within the time limit rejects with ETIMEDOUT and
   * ends the connection (its message ids and credits are then out of step with the server's).
   */
  async request(command: number, body: Buffer, options: RequestOptions = {}): Promise<SmbResponse> {
    const response = await this.exchange(command, body, options);
    if (response.status !== STATUS.SUCCESS && !(options.accept ?? []).includes(response.status)) {
      const error = new SmbStatusError(response.status, COMMAND_NAMES[command] ?? String(command));
      // The session or the tree connect is gone on the server: this connection cannot serve another request.
      if (SESSION_LOST.has(response.status)) this.destroy(error);
      throw error;
    }
    return response;
  }

  private async exchange(command: number, body: Buffer, options: RequestOptions): Promise<SmbResponse> {
    if (this.failure !== undefined) throw this.failure;
    const charge = this.chargeOf(options.payload ?? 0);
    const started = Date.now();
    await this.withTimeout(this.takeCredits(charge), command);
    if (this.failure !== undefined) throw this.failure;
    const messageId = this.nextMessageId;
    this.nextMessageId += BigInt(charge);
    const header = Buffer.alloc(HEADER);
    header.writeUInt32BE(PROTOCOL_ID, 0);
    header.writeUInt16LE(HEADER, 4);
    header.writeUInt16LE(this.dialect === DIALECT.SMB202 || this.dialect === 0 ? 0 : charge, 6);
    header.writeUInt16LE(command, 12);
    header.writeUInt16LE(Math.max(charge, Math.min(256, CREDIT_TARGET - this.credits)), 14);
    header.writeBigUInt64LE(messageId, 24);
    header.writeUInt32LE(0xfeff, 32);
    header.writeUInt32LE(command === COMMAND.NEGOTIATE || command === COMMAND.SESSION_SETUP ? 0 : this.treeId, 36);
    header.writeBigUInt64LE(this.sessionId, 40);
    const parts = options.data === undefined ? [header, body] : [header, body, options.data];
    const sign = this.signingKey !== undefined && (this.signAll || options.sign === true);
    if (sign) {
      header.writeUInt32LE(FLAG_SIGNED, 16);
      this.signature(parts).copy(header, 48);
      this.stats.signedRequests++;
    }
    const length = parts.reduce((sum, part) => sum + part.length, 0);
    const frame = Buffer.alloc(4);
    frame.writeUInt32BE(length, 0);
    const answer = new Promise<SmbResponse>((resolve, reject) => {
      const remaining = Math.max(1, this.options.timeoutMs - (Date.now() - started));
      const timer = setTimeout(() => {
        const error = new SmbConnectionError(
          "ETIMEDOUT",
          `no answer from the SMB server to ${COMMAND_NAMES[command] ?? command} within ${this.options.timeoutMs} ms`,
        );
        this.destroy(error);
      }, remaining);
      this.outstanding.set(messageId, { command, resolve, reject, timer, signed: sign });
    });
    const socket = this.socket;
    if (socket === undefined) throw new SmbConnectionError("ECONNRESET", "not connected");
    socket.cork();
    socket.write(frame);
    for (const part of parts) socket.write(part);
    socket.uncork();
    if (command === COMMAND.NEGOTIATE || command === COMMAND.SESSION_SETUP) this.hashPreauth(Buffer.concat(parts));
    return answer;
  }

  private withTimeout<T>(promise: Promise<T>, command: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new SmbConnectionError(
          "ETIMEDOUT",
          `the SMB server granted no credit for ${COMMAND_NAMES[command] ?? command} within ${this.options.timeoutMs} ms`,
        );
        this.destroy(error);
        reject(error);
      }, this.options.timeoutMs);
    });
    return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
  }

  // ---- signing (MS-SMB2 3.1.4.1) ----

  private signature(parts: readonly Buffer[]): Buffer {
    const key = this.signingKey as Buffer;
    return this.signingAlgorithm === "AES-CMAC" ? aesCmac(key, parts) : hmacSha256(key, parts).subarray(0, 16);
  }

  private verify(message: Buffer): boolean {
    const received = Buffer.from(message.subarray(48, 64));
    const header = Buffer.from(message.subarray(0, HEADER));
    header.fill(0, 48, 64);
    return this.signature([header, message.subarray(HEADER)]).equals(received);
  }

  // ---- 3.1.1 preauth integrity (MS-SMB2 3.2.5.2, 3.2.5.3.1) ----

  private hashPreauth(message: Buffer): void {
    if (this.dialect !== 0 && this.dialect !== DIALECT.SMB311) return;
    this.preauthHash = createHash("sha512").update(this.preauthHash).update(message).digest();
  }

  // ---- connection set-up ----

  private async negotiate(): Promise<void> {
    const salt = randomBytes(32);
    const preauth = Buffer.alloc(8 + 38);
    preauth.writeUInt16LE(1, 0); // SMB2_PREAUTH_INTEGRITY_CAPABILITIES
    preauth.writeUInt16LE(38, 2);
    preauth.writeUInt16LE(1, 8); // one hash algorithm
    preauth.writeUInt16LE(32, 10); // salt length
    preauth.writeUInt16LE(1, 12); // SHA-512
    salt.copy(preauth, 14);
    const fixed = 36 + DIALECTS.length * 2;
    const contextOffset = Math.ceil((HEADER + fixed) / 8) * 8;
    const body = Buffer.alloc(contextOffset - HEADER + preauth.length);
    body.writeUInt16LE(36, 0);
    body.writeUInt16LE(DIALECTS.length, 2);
    body.writeUInt16LE(this.options.alwaysSign === true ? SIGNING_ENABLED | SIGNING_REQUIRED : SIGNING_ENABLED, 4);
    body.writeUInt32LE(CAP_LARGE_MTU, 8);
    randomBytes(16).copy(body, 12); // ClientGuid
    body.writeUInt32LE(contextOffset, 28);
    body.writeUInt16LE(1, 32);
    DIALECTS.forEach((dialect, index) => body.writeUInt16LE(dialect, 36 + index * 2));
    preauth.copy(body, contextOffset - HEADER);
    const response = await this.request(COMMAND.NEGOTIATE, body);
    const answer = response.message;
    this.dialect = answer.readUInt16LE(HEADER + 4);
    if (!DIALECTS.includes(this.dialect as (typeof DIALECTS)[number])) {
      throw new SmbConnectionError(
        "EPROTO",
        `the SMB server chose dialect 0x${this.dialect.toString(16)}, which this client did not offer`,
      );
    }
    this.serverRequiresSigning = (answer.readUInt16LE(HEADER + 2) & SIGNING_REQUIRED) !== 0;
    const capabilities = answer.readUInt32LE(HEADER + 24);
    this.multiCredit = this.dialect !== DIALECT.SMB202 && (capabilities & CAP_LARGE_MTU) !== 0;
    const cap = this.multiCredit ? 8 * 1024 * 1024 : 65536;
    this.maxTransactSize = Math.min(answer.readUInt32LE(HEADER + 28), cap);
    this.maxReadSize = Math.min(answer.readUInt32LE(HEADER + 32), cap);
    this.maxWriteSize = Math.min(answer.readUInt32LE(HEADER + 36), cap);
    this.signingAlgorithm = this.dialect >= DIALECT.SMB300 ? "AES-CMAC" : "HMAC-SHA256";
    if (this.dialect === DIALECT.SMB311) {
      // The request was hashed before the dialect was known; the response now.
      this.hashPreauth(answer);
    } else {
      this.preauthHash = Buffer.alloc(64);
    }
  }

  private async sessionSetup(): Promise<void> {
    const negotiate = negotiateMessage();
    const first = await this.request(COMMAND.SESSION_SETUP, this.sessionSetupBody(negotiate), {
      accept: [STATUS.MORE_PROCESSING_REQUIRED],
    });
    if (first.status !== STATUS.MORE_PROCESSING_REQUIRED) {
      throw new SmbConnectionError("EPROTO", "the SMB server accepted a session without authentication");
    }
    this.sessionId = first.message.readBigUInt64LE(40);
    this.hashPreauth(first.message);
    const challenge = securityBuffer(first.message);
    const { message, sessionKey } = authenticateMessage(negotiate, challenge, {
      username: this.options.username,
      password: this.options.password,
      domain: this.options.domain,
    });
    // The final answer is signed (always on 3.1.1) with a key derived from the preauth hash, which covers this last
    // request but not its answer: the key is made and the signature checked here, once the answer is in.
    const answer = await this.exchange(COMMAND.SESSION_SETUP, this.sessionSetupBody(message), {});
    if (answer.status !== STATUS.SUCCESS) throw new SmbStatusError(answer.status, "SESSION_SETUP");
    const key = sessionKey.subarray(0, 16);
    if (this.dialect === DIALECT.SMB311) {
      this.signingKey = smb3Kdf(key, Buffer.from("SMBSigningKey\0", "latin1"), this.preauthHash);
    } else if (this.dialect >= DIALECT.SMB300) {
      this.signingKey = smb3Kdf(key, Buffer.from("SMB2AESCMAC\0", "latin1"), Buffer.from("SmbSign\0", "latin1"));
    } else {
      this.signingKey = Buffer.from(key);
    }
    if ((answer.message.readUInt32LE(16) & FLAG_SIGNED) !== 0) {
      if (!this.verify(answer.message)) {
        throw new SmbConnectionError(
          "EPROTO",
          "the SMB server's session answer has a wrong signature (wrong password or a tampered connection)",
        );
      }
      this.stats.verifiedResponses++;
    } else if (this.dialect === DIALECT.SMB311 || this.serverRequiresSigning) {
      throw new SmbConnectionError("EPROTO", "the SMB server did not sign its session answer");
    }
    const sessionFlags = answer.message.readUInt16LE(HEADER + 2);
    if ((sessionFlags & (SESSION_FLAG_GUEST | SESSION_FLAG_NULL)) !== 0) {
      // A guest session has no key to sign with and ignores the credentials given: refuse it rather than write as guest.
      throw new SmbStatusError(0xc000006d, "SESSION_SETUP (the server made it a guest session)");
    }
    this.signAll = this.serverRequiresSigning || this.options.alwaysSign === true;
  }

  private sessionSetupBody(token: Buffer): Buffer {
    const body = Buffer.alloc(24 + token.length);
    body.writeUInt16LE(25, 0);
    body.writeUInt8(this.options.alwaysSign === true ? SIGNING_REQUIRED : SIGNING_ENABLED, 3);
    body.writeUInt16LE(HEADER + 24, 12);
    body.writeUInt16LE(token.length, 14);
    token.copy(body, 24);
    return body;
  }

  private async treeConnect(): Promise<void> {
    const path = Buffer.from(`\\\\${this.options.host}\\${this.options.share}`, "utf16le");
    const body = Buffer.alloc(8 + path.length);
    body.writeUInt16LE(9, 0);
    body.writeUInt16LE(HEADER + 8, 4);
    body.writeUInt16LE(path.length, 6);
    path.copy(body, 8);
    // MS-SMB2 3.2.4.1.1 / 3.3.5.7: on 3.1.1 a tree connect is signed, whatever the session's signing rule.
    const response = await this.request(COMMAND.TREE_CONNECT, body, { sign: this.dialect === DIALECT.SMB311 });
    this.treeId = response.message.readUInt32LE(36);
  }
}

/** The security buffer of a SESSION_SETUP response (MS-SMB2 2.2.6). */
function securityBuffer(message: Buffer): Buffer {
  const offset = message.readUInt16LE(HEADER + 4);
  const length = message.readUInt16LE(HEADER + 6);
  if (offset + length > message.length) throw new SmbConnectionError("EPROTO", "the SMB server's session answer is malformed");
  return message.subarray(offset, offset + length);
}
