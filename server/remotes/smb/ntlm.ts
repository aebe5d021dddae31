import { randomBytes } from "node:crypto";
import { hmacMd5, md4, rc4 } from "./crypto.js";

/**
 * NTLMSSP with NTLMv2 responses (MS-NLMP), the client side only: the NEGOTIATE message, the AUTHENTICATE answer to the
 * server's CHALLENGE, and the session key SMB signs with. Sent raw in SMB2 SESSION_SETUP (no SPNEGO wrapping: Samba and
 * Windows both accept a bare NTLMSSP token). NTLMv1 and LM are never sent.
 */

const SIGNATURE = Buffer.from("NTLMSSP\0", "latin1");

/** MS-NLMP 2.2.2.5. */
const FLAGS = {
  UNICODE: 0x00000001,
  REQUEST_TARGET: 0x00000004,
  SIGN: 0x00000010,
  NTLM: 0x00000200,
  ALWAYS_SIGN: 0x00008000,
  EXTENDED_SESSIONSECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  VERSION: 0x02000000,
  N128: 0x20000000,
  KEY_EXCH: 0x40000000,
  N56: 0x80000000,
};

const NEGOTIATE_FLAGS =
  FLAGS.UNICODE |
  FLAGS.REQUEST_TARGET |
  FLAGS.SIGN |
  FLAGS.NTLM |
  FLAGS.ALWAYS_SIGN |
  FLAGS.EXTENDED_SESSIONSECURITY |
  FLAGS.TARGET_INFO |
  FLAGS.VERSION |
  FLAGS.N128 |
  FLAGS.KEY_EXCH |
  FLAGS.N56;

/** AV pair ids (MS-NLMP 2.2.2.1). */
const AV_EOL = 0;
const AV_FLAGS = 6;
const AV_TIMESTAMP = 7;
/** MsvAvFlags bit: the AUTHENTICATE message carries a MIC. */
const AV_FLAG_MIC = 0x2;

/** A VERSION structure (MS-NLMP 2.2.2.10): informational only; NTLM revision 15. */
const VERSION = Buffer.from([10, 0, 0x61, 0x4a, 0, 0, 0, 15]);

/** Milliseconds between 1601-01-01 and 1970-01-01 (FILETIME epoch). */
const FILETIME_EPOCH_MS = 11_644_473_600_000n;

export function fileTimeNow(): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE((BigInt(Date.now()) + FILETIME_EPOCH_MS) * 10_000n);
  return out;
}

/** NTOWFv2 (MS-NLMP 3.3.2): the key of every NTLMv2 computation. */
export function ntowfv2(password: string, user: string, domain: string): Buffer {
  return hmacMd5(md4(Buffer.from(password, "utf16le")), Buffer.from(user.toUpperCase() + domain, "utf16le"));
}

export function negotiateMessage(): Buffer {
  const message = Buffer.alloc(40);
  SIGNATURE.copy(message, 0);
  message.writeUInt32LE(1, 8);
  message.writeUInt32LE(NEGOTIATE_FLAGS >>> 0, 12);
  // Domain and workstation fields stay empty (length 0, offset at the end).
  message.writeUInt32LE(40, 20);
  message.writeUInt32LE(40, 28);
  VERSION.copy(message, 32);
  return message;
}

interface Challenge {
  flags: number;
  serverChallenge: Buffer;
  targetInfo: Buffer;
}

function parseChallenge(message: Buffer): Challenge {
  if (message.length < 48 || !message.subarray(0, 8).equals(SIGNATURE) || message.readUInt32LE(8) !== 2) {
    throw new Error("the server's NTLM challenge is malformed");
  }
  const infoLength = message.readUInt16LE(40);
  const infoOffset = message.readUInt32LE(44);
  if (infoOffset + infoLength > message.length) throw new Error("the server's NTLM challenge is malformed");
  return {
    flags: message.readUInt32LE(20),
    serverChallenge: message.subarray(24, 32),
    targetInfo: message.subarray(infoOffset, infoOffset + infoLength),
  };
}

/** The AV pairs of a target info, in order, without the terminating MsvAvEOL. */
function avPairs(info: Buffer): { id: number; value: Buffer }[] {
  const pairs: { id: number; value: Buffer }[] = [];
  for (let at = 0; at + 4 <= info.length; ) {
    const id = info.readUInt16LE(at);
    const length = info.readUInt16LE(at + 2);
    if (id === AV_EOL) break;
    pairs.push({ id, value: info.subarray(at + 4, at + 4 + length) });
    at += 4 + length;
  }
  return pairs;
}

function encodeAvPairs(pairs: { id: number; value: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { id, value } of [...pairs, { id: AV_EOL, value: Buffer.alloc(0) }]) {
    const head = Buffer.alloc(4);
    head.writeUInt16LE(id, 0);
    head.writeUInt16LE(value.length, 2);
    parts.push(head, value);
  }
  return Buffer.concat(parts);
}

export interface Authentication {
  /** The AUTHENTICATE message to send. */
  message: Buffer;
  /** The key SMB signs with (ExportedSessionKey, MS-NLMP 3.1.5.1.2), 16 bytes. */
  sessionKey: Buffer;
}

/**
 * The AUTHENTICATE message answering `challengeMessage` (MS-NLMP 3.1.5.1.2, 3.3.2): an NTLMv2 response, a random
 * session key sent under RC4 of the session base key (key exchange), and, when the server sent a timestamp, a MIC over
 * the three messages with MsvAvFlags saying so (and an empty LMv2 response, as MS-NLMP asks then).
 */
export function authenticateMessage(
  negotiate: Buffer,
  challengeMessage: Buffer,
  credentials: { username: string; password: string; domain: string },
  random: (size: number) => Buffer = randomBytes,
  now: () => Buffer = fileTimeNow,
): Authentication {
  const challenge = parseChallenge(challengeMessage);
  const pairs = avPairs(challenge.targetInfo);
  const serverTime = pairs.find((pair) => pair.id === AV_TIMESTAMP)?.value;
  const withMic = serverTime !== undefined;
  if (withMic) {
    const flags = pairs.find((pair) => pair.id === AV_FLAGS);
    const value = Buffer.alloc(4);
    value.writeUInt32LE(((flags?.value.length === 4 ? flags.value.readUInt32LE(0) : 0) | AV_FLAG_MIC) >>> 0);
    if (flags === undefined) pairs.push({ id: AV_FLAGS, value });
    else flags.value = value;
  }
  const key = ntowfv2(credentials.password, credentials.username, credentials.domain);
  const clientChallenge = random(8);
  const time = serverTime ?? now();
  const blob = Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    time,
    clientChallenge,
    Buffer.alloc(4),
    encodeAvPairs(pairs),
    Buffer.alloc(4),
  ]);
  const proof = hmacMd5(key, challenge.serverChallenge, blob);
  const ntResponse = Buffer.concat([proof, blob]);
  const lmResponse = withMic
    ? Buffer.alloc(24)
    : Buffer.concat([hmacMd5(key, challenge.serverChallenge, clientChallenge), clientChallenge]);
  const sessionBaseKey = hmacMd5(key, proof);
  const flags = (NEGOTIATE_FLAGS & challenge.flags) >>> 0;
  const keyExchange = (flags & FLAGS.KEY_EXCH) !== 0;
  const sessionKey = keyExchange ? random(16) : sessionBaseKey;
  const encryptedKey = keyExchange ? rc4(sessionBaseKey, sessionKey) : Buffer.alloc(0);

  const domain = Buffer.from(credentials.domain, "utf16le");
  const user = Buffer.from(credentials.username, "utf16le");
  const workstation = Buffer.alloc(0);
  const HEAD = 88;
  const payload = [lmResponse, ntResponse, domain, user, workstation, encryptedKey];
  const message = Buffer.alloc(HEAD + payload.reduce((sum, part) => sum + part.length, 0));
  SIGNATURE.copy(message, 0);
  message.writeUInt32LE(3, 8);
  let offset = HEAD;
  // Fields in the header's order: LM, NT, domain, user, workstation, encrypted session key.
  payload.forEach((part, index) => {
    const field = 12 + index * 8;
    message.writeUInt16LE(part.length, field);
    message.writeUInt16LE(part.length, field + 2);
    message.writeUInt32LE(offset, field + 4);
    part.copy(message, offset);
    offset += part.length;
  });
  message.writeUInt32LE(flags, 60);
  VERSION.copy(message, 64);
  if (withMic) hmacMd5(sessionKey, negotiate, challengeMessage, message).copy(message, 72);
  return { message, sessionKey };
}
