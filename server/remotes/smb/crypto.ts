import { createCipheriv, createHmac } from "node:crypto";

/**
 * The primitives SMB2/3 and NTLMv2 need that Node's OpenSSL 3 no longer offers by default (MD4, RC4 live in its legacy
 * provider, which a server should not have to load) or never offered (AES-CMAC), plus the SP800-108 key derivation of
 * SMB 3.x. MD4 and RC4 only ever see a password hash and a 16-byte key: their weakness is NTLM's, not ours.
 */

/** MD4 (RFC 1320), for the NT hash of the password (MS-NLMP 3.3.1 NTOWFv1, the input of NTOWFv2). */
export function md4(input: Buffer): Buffer {
  const bitLength = BigInt(input.length) * 8n;
  const padded = Buffer.alloc(Math.ceil((input.length + 9) / 64) * 64);
  input.copy(padded);
  padded[input.length] = 0x80;
  padded.writeBigUInt64LE(bitLength, padded.length - 8);
  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n));
  const x = new Uint32Array(16);
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) x[i] = padded.readUInt32LE(block + i * 4);
    const [aa, bb, cc, dd] = [a, b, c, d];
    const f = (p: number, q: number, r: number) => (p & q) | (~p & r);
    const g = (p: number, q: number, r: number) => (p & q) | (p & r) | (q & r);
    const h = (p: number, q: number, r: number) => p ^ q ^ r;
    for (const i of [0, 4, 8, 12]) {
      a = rotl((a + f(b, c, d) + x[i]) | 0, 3);
      d = rotl((d + f(a, b, c) + x[i + 1]) | 0, 7);
      c = rotl((c + f(d, a, b) + x[i + 2]) | 0, 11);
      b = rotl((b + f(c, d, a) + x[i + 3]) | 0, 19);
    }
    for (const i of [0, 1, 2, 3]) {
      a = rotl((a + g(b, c, d) + x[i] + 0x5a827999) | 0, 3);
      d = rotl((d + g(a, b, c) + x[i + 4] + 0x5a827999) | 0, 5);
      c = rotl((c + g(d, a, b) + x[i + 8] + 0x5a827999) | 0, 9);
      b = rotl((b + g(c, d, a) + x[i + 12] + 0x5a827999) | 0, 13);
    }
    for (const i of [0, 2, 1, 3]) {
      a = rotl((a + h(b, c, d) + x[i] + 0x6ed9eba1) | 0, 3);
      d = rotl((d + h(a, b, c) + x[i + 8] + 0x6ed9eba1) | 0, 9);
      c = rotl((c + h(d, a, b) + x[i + 4] + 0x6ed9eba1) | 0, 11);
      b = rotl((b + h(c, d, a) + x[i + 12] + 0x6ed9eba1) | 0, 15);
    }
    a = (a + aa) | 0;
    b = (b + bb) | 0;
    c = (c + cc) | 0;
    d = (d + dd) | 0;
  }
  const out = Buffer.alloc(16);
  [a, b, c, d].forEach((word, i) => out.writeInt32LE(word, i * 4));
  return out;
}

/** RC4, only to encrypt the 16-byte random session key of NTLMSSP key exchange (MS-NLMP 3.1.5.1.2). */
export function rc4(key: Buffer, data: Buffer): Buffer {
  const s = Array.from({ length: 256 }, (_, i) => i);
  for (let i = 0, j = 0; i < 256; i++) {
    j = (j + s[i] + key[i % key.length]) & 0xff;
    [s[i], s[j]] = [s[j], s[i]];
  }
  const out = Buffer.alloc(data.length);
  for (let n = 0, i = 0, j = 0; n < data.length; n++) {
    i = (i + 1) & 0xff;
    j = (j + s[i]) & 0xff;
    [s[i], s[j]] = [s[j], s[i]];
    out[n] = data[n] ^ s[(s[i] + s[j]) & 0xff];
  }
  return out;
}

export function hmacMd5(key: Buffer, ...parts: Buffer[]): Buffer {
  const hmac = createHmac("md5", key);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

/** Doubling in GF(2^128), the subkey step of CMAC (RFC 4493 2.3). */
function double(block: Buffer): Buffer {
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) out[i] = ((block[i] << 1) | (i < 15 ? block[i + 1] >> 7 : 0)) & 0xff;
  if (block[0] & 0x80) out[15] ^= 0x87;
  return out;
}

/**
 * AES-128-CMAC (RFC 4493) over the concatenation of `parts`, without copying them: CBC-MAC with a zero IV over all
 * complete blocks but the last, the last one xored with the subkey. Used as SMB 3.0/3.0.2/3.1.1 signing.
 */
export function aesCmac(key: Buffer, parts: readonly Buffer[]): Buffer {
  const zero = Buffer.alloc(16);
  const ecb = createCipheriv("aes-128-ecb", key, null).setAutoPadding(false);
  const k1 = double(ecb.update(zero));
  const k2 = double(k1);
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const complete = total > 0 && total % 16 === 0;
  const headLength = total === 0 ? 0 : complete ? total - 16 : total - (total % 16);
  const cbc = createCipheriv("aes-128-cbc", key, zero).setAutoPadding(false);
  const last = Buffer.alloc(16);
  let seen = 0;
  for (const part of parts) {
    const headPart = Math.max(0, Math.min(part.length, headLength - seen));
    if (headPart > 0) cbc.update(part.subarray(0, headPart));
    if (headPart < part.length) part.copy(last, seen + headPart - headLength, headPart);
    seen += part.length;
  }
  const tail = total - headLength;
  if (!complete) last[tail] = 0x80;
  const subkey = complete ? k1 : k2;
  for (let i = 0; i < 16; i++) last[i] ^= subkey[i];
  return cbc.update(last);
}

export function hmacSha256(key: Buffer, parts: readonly Buffer[]): Buffer {
  const hmac = createHmac("sha256", key);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

/** SP800-108 KDF in counter mode with HMAC-SHA256, L = 128, as MS-SMB2 3.1.4.2 uses it for SMB 3.x keys. */
export function smb3Kdf(key: Buffer, label: Buffer, context: Buffer): Buffer {
  const counter = Buffer.from([0, 0, 0, 1]);
  const length = Buffer.from([0, 0, 0, 128]);
  return hmacSha256(key, [counter, label, Buffer.from([0]), context, length]).subarray(0, 16);
}
