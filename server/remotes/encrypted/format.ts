/**
 * The on-remote format of an encrypted remote (server/repository/FORMAT.md, "Encryption"): every file is a 32-byte header
 * followed by chunks of at most {@link CHUNK_SIZE} plaintext bytes, each sealed on its own with AES-256-GCM, so that any
 * byte range can be read, and any chunk rewritten, without touching the rest of the file.
 *
 * header  = "CAIRNENC" | version (1) | cipher (1 = AES-256-GCM) | 0x0000 | chunk size (u32 BE) | file id (16 random bytes)
 * chunk i = nonce (12 random bytes) | ciphertext | tag (16)
 * key     = HKDF-SHA256(master key, salt = file id, info = "cairn remote file v1"), one per file
 * AAD     = header | i (u64 BE) | 1 if chunk i is the file's last, else 0
 *
 * The nonce is random rather than derived from (file, index) because a merge rewrites chunks in place: a counter nonce
 * would then repeat under the same key. With one key per file, 2^32 random nonces (the usual GCM bound) is 256 TiB of
 * chunk writes to a single file. The index and the last flag in the AAD make a chunk moved, dropped, cut or appended fail
 * to authenticate; the header in the AAD makes a changed header fail every chunk; the per-file key makes a chunk copied
 * from another file fail.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  scrypt as scryptCallback,
  timingSafeEqual,
} from "node:crypto";

export const MAGIC = Buffer.from("CAIRNENC", "ascii");
export const FORMAT_VERSION = 1;
export const CIPHER_AES_256_GCM = 1;
export const HEADER_SIZE = 32;
export const CHUNK_SIZE = 64 * 1024;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;
/** What each chunk adds to its plaintext: its nonce and its tag. */
export const CHUNK_OVERHEAD = NONCE_SIZE + TAG_SIZE;
/** The stored size of a full chunk. */
export const SLOT_SIZE = CHUNK_SIZE + CHUNK_OVERHEAD;
const FILE_KEY_INFO = Buffer.from("cairn remote file v1", "ascii");

/** The name of the key check file at the root of an encrypted remote (stored in clear: it holds no secret). */
export const KEY_CHECK_FILE = "cairn-key-check.json";
const KEY_CHECK_TEXT = "cairn key check v1";
const KEY_CHECK_AAD = Buffer.from("cairn-key-check", "ascii");

/** scrypt cost of a passphrase: 32 MiB of memory, about 0.1 s; stored in the key check file, so it can change later. */
export const SCRYPT_PARAMS = { N: 32_768, r: 8, p: 1 } as const;

/** A file's header, parsed. */
export interface FileHeader {
  /** The 32 bytes as stored (part of every chunk's AAD). */
  bytes: Buffer;
  fileId: Buffer;
}

export function newHeader(): FileHeader {
  const bytes = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(bytes, 0);
  bytes[8] = FORMAT_VERSION;
  bytes[9] = CIPHER_AES_256_GCM;
  bytes.writeUInt32BE(CHUNK_SIZE, 12);
  const fileId = randomBytes(16);
  fileId.copy(bytes, 16);
  return { bytes, fileId };
}

/** The header in `bytes`, or why it is not one this build reads. */
export function parseHeader(bytes: Buffer): FileHeader | string {
  if (bytes.length < HEADER_SIZE) return `it is ${bytes.length} bytes long, shorter than the ${HEADER_SIZE}-byte header`;
  if (!bytes.subarray(0, 8).equals(MAGIC)) return "it does not start with CAIRNENC: it is not an encrypted file";
  if (bytes[8] !== FORMAT_VERSION) return `its format version is ${bytes[8]}, this Cairn reads version ${FORMAT_VERSION}`;
  if (bytes[9] !== CIPHER_AES_256_GCM || bytes.readUInt16BE(10) !== 0) return "its header names an unknown cipher";
  const chunkSize = bytes.readUInt32BE(12);
  if (chunkSize !== CHUNK_SIZE) return `its chunk size is ${chunkSize}, this Cairn writes and reads ${CHUNK_SIZE}`;
  const header = Buffer.from(bytes.subarray(0, HEADER_SIZE));
  return { bytes: header, fileId: header.subarray(16, 32) };
}

export function fileKey(masterKey: Buffer, fileId: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", masterKey, fileId, FILE_KEY_INFO, 32));
}

function chunkAad(header: FileHeader, index: number, last: boolean): Buffer {
  const aad = Buffer.alloc(HEADER_SIZE + 9);
  header.bytes.copy(aad, 0);
  aad.writeBigUInt64BE(BigInt(index), HEADER_SIZE);
  aad[HEADER_SIZE + 8] = last ? 1 : 0;
  return aad;
}

/** Chunk `index` of a file, sealed: nonce | ciphertext | tag. */
export function sealChunk(key: Buffer, header: FileHeader, index: number, last: boolean, plain: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_SIZE);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(chunkAad(header, index, last));
  const body = cipher.update(plain);
  cipher.final();
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** The plaintext of a sealed chunk, or undefined when it does not authenticate (never partial data). */
export function openChunk(key: Buffer, header: FileHeader, index: number, last: boolean, sealed: Buffer): Buffer | undefined {
  if (sealed.length < CHUNK_OVERHEAD) return undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_SIZE));
    decipher.setAAD(chunkAad(header, index, last));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
    const plain = decipher.update(sealed.subarray(NONCE_SIZE, sealed.length - TAG_SIZE));
    decipher.final();
    return plain;
  } catch {
    return undefined;
  }
}

/** How many chunks a file of `plainSize` bytes has: an empty file has one, empty, chunk (so that cutting it shows). */
export function chunkCount(plainSize: number): number {
  return plainSize === 0 ? 1 : Math.ceil(plainSize / CHUNK_SIZE);
}

/** The plaintext length of chunk `index` of a file of `plainSize` bytes. */
export function chunkLength(plainSize: number, index: number): number {
  return Math.max(0, Math.min(CHUNK_SIZE, plainSize - index * CHUNK_SIZE));
}

/** Where chunk `index` starts in the stored file. */
export function slotOffset(index: number): number {
  return HEADER_SIZE + index * SLOT_SIZE;
}

/** The stored size of a file of `plainSize` bytes. */
export function storedSize(plainSize: number): number {
  return HEADER_SIZE + plainSize + chunkCount(plainSize) * CHUNK_OVERHEAD;
}

/** The plaintext size of a stored file of `stored` bytes, or undefined when no plaintext size gives that length. */
export function plainSizeOf(stored: number): number | undefined {
  const body = stored - HEADER_SIZE;
  if (body < CHUNK_OVERHEAD) return undefined;
  const chunks = Math.ceil(body / SLOT_SIZE);
  const lastLength = body - (chunks - 1) * SLOT_SIZE - CHUNK_OVERHEAD;
  if (lastLength < 0 || (chunks > 1 && lastLength === 0)) return undefined;
  return (chunks - 1) * CHUNK_SIZE + lastLength;
}

/** A whole small file, sealed (header and every chunk). */
export function sealWhole(masterKey: Buffer, plain: Uint8Array): Buffer {
  const header = newHeader();
  const key = fileKey(masterKey, header.fileId);
  const count = chunkCount(plain.length);
  const parts: Buffer[] = [header.bytes];
  for (let index = 0; index < count; index++) {
    const start = index * CHUNK_SIZE;
    parts.push(sealChunk(key, header, index, index === count - 1, plain.subarray(start, start + CHUNK_SIZE)));
  }
  return Buffer.concat(parts);
}

/** The key check file's content (JSON), as stored at the root of the remote. */
export interface KeyCheck {
  format: "cairn-encrypted-remote";
  version: 1;
  cipher: "AES-256-GCM";
  chunkSize: number;
  kdf: { name: "scrypt"; salt: string; N: number; r: number; p: number } | { name: "none" };
  /** base64(nonce | ciphertext | tag) of a known text, sealed with the master key and the AAD "cairn-key-check". */
  check: string;
}

/** The secret a remote is given: a raw 32-byte key (64 hex digits or base64), else a passphrase. */
export type EncryptionSecret = { kind: "key"; key: Buffer } | { kind: "passphrase"; passphrase: string };

export const MIN_PASSPHRASE_LENGTH = 12;

/** How a secret is read: 64 hex digits or 44 base64 characters are a raw key; anything else a passphrase. */
export function parseEncryptionSecret(text: string): EncryptionSecret {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return { kind: "key", key: Buffer.from(text, "hex") };
  if (/^[A-Za-z0-9+/]{43}=$/.test(text)) return { kind: "key", key: Buffer.from(text, "base64") };
  return { kind: "passphrase", passphrase: text };
}

/** Why a secret cannot be used for a new remote, or undefined. */
export function encryptionSecretProblem(text: string): string | undefined {
  if (parseEncryptionSecret(text).kind === "key") return undefined;
  if (text.length < MIN_PASSPHRASE_LENGTH) {
    return `a passphrase needs at least ${MIN_PASSPHRASE_LENGTH} characters (or give a 32-byte key as 64 hex digits or base64)`;
  }
  return undefined;
}

/**
 * Keys derived in this process, by salt, parameters and an HMAC of the passphrase: every operation opens its remote anew
 * (a new handle per run, restore, scan), and scrypt is meant to be slow. Holds what live remotes hold anyway.
 */
const derivedKeys = new Map<string, Buffer>();
const DERIVED_KEYS_KEPT = 32;

async function scrypt(passphrase: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  const id = `${params.N}:${params.r}:${params.p}:${salt.toString("base64")}:${createHmac("sha256", salt).update(passphrase).digest("base64")}`;
  const known = derivedKeys.get(id);
  if (known !== undefined) return known;
  const key = await scryptUncached(passphrase, salt, params);
  if (derivedKeys.size >= DERIVED_KEYS_KEPT) derivedKeys.delete(derivedKeys.keys().next().value as string);
  derivedKeys.set(id, key);
  return key;
}

function scryptUncached(passphrase: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCallback(passphrase.normalize("NFC"), salt, 32, { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** The master key a secret gives under the key check file's KDF; undefined when the secret's form does not fit it. */
export async function deriveMasterKey(secret: EncryptionSecret, kdf: KeyCheck["kdf"]): Promise<Buffer | undefined> {
  if (kdf.name === "none") return secret.kind === "key" ? secret.key : undefined;
  // A text reads the same way every time (parseEncryptionSecret): a key-shaped one never made a passphrase remote.
  if (secret.kind !== "passphrase") return undefined;
  return scrypt(secret.passphrase, Buffer.from(kdf.salt, "base64"), kdf);
}

/** A new key check for `secret`, and the master key it fixes. */
export async function newKeyCheck(secret: EncryptionSecret): Promise<{ check: KeyCheck; masterKey: Buffer }> {
  const kdf: KeyCheck["kdf"] =
    secret.kind === "key" ? { name: "none" } : { name: "scrypt", salt: randomBytes(16).toString("base64"), ...SCRYPT_PARAMS };
  const masterKey =
    secret.kind === "key"
      ? secret.key
      : await scrypt(secret.passphrase, Buffer.from((kdf as { salt: string }).salt, "base64"), SCRYPT_PARAMS);
  const nonce = randomBytes(NONCE_SIZE);
  const cipher = createCipheriv("aes-256-gcm", masterKey, nonce);
  cipher.setAAD(KEY_CHECK_AAD);
  const body = Buffer.concat([cipher.update(KEY_CHECK_TEXT, "utf8"), cipher.final()]);
  const check: KeyCheck = {
    format: "cairn-encrypted-remote",
    version: 1,
    cipher: "AES-256-GCM",
    chunkSize: CHUNK_SIZE,
    kdf,
    check: Buffer.concat([nonce, body, cipher.getAuthTag()]).toString("base64"),
  };
  return { check, masterKey };
}

/** The key check file's content, or why it is not one this build reads. */
export function parseKeyCheck(bytes: Buffer): KeyCheck | string {
  let value: Partial<KeyCheck>;
  try {
    value = JSON.parse(bytes.toString("utf8")) as Partial<KeyCheck>;
  } catch {
    return "it is not JSON";
  }
  if (value?.format !== "cairn-encrypted-remote") return "it does not describe an encrypted Cairn remote";
  if (value.version !== 1 || value.cipher !== "AES-256-GCM" || value.chunkSize !== CHUNK_SIZE)
    return `it describes version ${String(value.version)}, cipher ${String(value.cipher)}, chunks of ${String(value.chunkSize)}: not what this Cairn reads`;
  const kdf = value.kdf as Record<string, unknown> | undefined;
  const scryptOk =
    kdf?.name === "scrypt" &&
    typeof kdf.salt === "string" &&
    [kdf.N, kdf.r, kdf.p].every((n) => Number.isSafeInteger(n) && (n as number) > 0) &&
    (kdf.N as number) <= 1_048_576 &&
    (kdf.r as number) <= 32 &&
    (kdf.p as number) <= 16;
  if (!(kdf?.name === "none" || scryptOk)) return "its key derivation settings are not understood";
  if (typeof value.check !== "string") return "it holds no check value";
  return value as KeyCheck;
}

/** Whether `masterKey` opens the key check's sealed value. */
export function keyMatches(check: KeyCheck, masterKey: Buffer): boolean {
  const sealed = Buffer.from(check.check, "base64");
  if (sealed.length < CHUNK_OVERHEAD) return false;
  try {
    const decipher = createDecipheriv("aes-256-gcm", masterKey, sealed.subarray(0, NONCE_SIZE));
    decipher.setAAD(KEY_CHECK_AAD);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
    const plain = Buffer.concat([decipher.update(sealed.subarray(NONCE_SIZE, sealed.length - TAG_SIZE)), decipher.final()]);
    const expected = Buffer.from(KEY_CHECK_TEXT, "utf8");
    return plain.length === expected.length && timingSafeEqual(plain, expected);
  } catch {
    return false;
  }
}
