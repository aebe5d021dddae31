/**
 * The certificate Cairn serves HTTPS with: TLS_CERT and TLS_KEY when given, else a self-signed one made on first start and kept
 * in DATA_DIR/tls (so that its fingerprint, which clients pin, stays the same across restarts).
 *
 * Node can make keys and sign but has no X.509 writer, so the self-signed certificate is encoded here (a few DER structures,
 * checked by node's own X509Certificate and by openssl in the tests) rather than by running the `openssl` program, which slim
 * images and sandboxed services may lack, or by an npm package (`selfsigned` brings node-forge, a whole second crypto stack,
 * for what is one ECDSA signature over a fixed structure).
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import fs from "node:fs/promises";
import { hostname } from "node:os";
import net from "node:net";
import path from "node:path";
import { servesTls, type Config } from "../config.js";
import { CairnError, ErrorCode } from "../errors.js";

export interface TlsCertificate {
  /** PEM: the certificate and any chain after it, as read. */
  cert: string;
  key: string;
  /** SHA-256 of the certificate, `AB:CD:…` as openssl and browsers print it. */
  fingerprint: string;
  selfSigned: boolean;
  /** The certificate file. */
  certPath: string;
  validTo: Date;
  /** A self-signed certificate made on this start (a new fingerprint for clients to pin). */
  created: boolean;
}

/** Self-signed certificates are remade this long before they expire. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
/** Apple's platforms refuse TLS server certificates valid longer than 825 days, even trusted by hand. */
const SELF_SIGNED_DAYS = 825;

/** The certificate to serve HTTPS with under `config`, or undefined for plain HTTP (see Config.tls). */
export async function tlsCertificateFor(
  config: Pick<Config, "tls" | "tlsCert" | "tlsKey" | "host" | "publicUrl" | "dataDir">,
): Promise<TlsCertificate | undefined> {
  if (!servesTls(config)) return undefined;
  if (config.tlsCert && config.tlsKey) return loadTlsCertificate(config.tlsCert, config.tlsKey);
  const names = [config.host, config.publicUrl ? new URL(config.publicUrl).hostname.replace(/^\[|\]$/g, "") : ""];
  return selfSignedCertificate(
    path.join(config.dataDir, "tls"),
    names.filter((name) => name && name !== "0.0.0.0" && name !== "::"),
  );
}

/** TLS_CERT and TLS_KEY: readable, PEM, and the key belongs to the certificate; otherwise a start error naming the variable. */
export async function loadTlsCertificate(certPath: string, keyPath: string): Promise<TlsCertificate> {
  const cert = await readPem("TLS_CERT", certPath);
  const key = await readPem("TLS_KEY", keyPath);
  const { x509, privateKey } = parsePair(cert, key, { cert: `TLS_CERT (${certPath})`, key: `TLS_KEY (${keyPath})` });
  if (!x509.checkPrivateKey(privateKey)) {
    throw invalid(
      `TLS_KEY (${keyPath}) is not the private key of the certificate in TLS_CERT (${certPath}): give the key it was made with.`,
    );
  }
  return { cert, key, fingerprint: x509.fingerprint256, selfSigned: false, certPath, validTo: new Date(x509.validTo), created: false };
}

/**
 * The self-signed certificate in `dir` (cairn.crt, cairn.key), made when missing or expiring within 30 days, naming `names`
 * (host names and IP addresses) besides localhost, 127.0.0.1, ::1 and this machine's host name.
 */
export async function selfSignedCertificate(dir: string, names: string[] = [], now = new Date()): Promise<TlsCertificate> {
  const certPath = path.join(dir, "cairn.crt");
  const keyPath = path.join(dir, "cairn.key");
  const existing = await readIfPresent(certPath, keyPath);
  if (existing) {
    const { x509, privateKey } = parsePair(existing.cert, existing.key, { cert: certPath, key: keyPath });
    if (!x509.checkPrivateKey(privateKey)) {
      throw invalid(`${keyPath} is not the key of ${certPath}: delete both files to have a new self-signed certificate made.`);
    }
    const validTo = new Date(x509.validTo);
    if (validTo.getTime() - now.getTime() > RENEW_BEFORE_MS) {
      return { ...existing, fingerprint: x509.fingerprint256, selfSigned: true, certPath, validTo, created: false };
    }
  }
  const made = makeSelfSigned([...new Set(["localhost", hostname(), "127.0.0.1", "::1", ...names])], now);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // The key first, then the certificate, each replaced whole: a crash between leaves a pair that does not match, which the next
  // start reports, never a half-written file.
  await writeAtomically(keyPath, made.key, 0o600);
  await writeAtomically(certPath, made.cert, 0o644);
  const x509 = new X509Certificate(made.cert);
  return { ...made, fingerprint: x509.fingerprint256, selfSigned: true, certPath, validTo: new Date(x509.validTo), created: true };
}

/** A P-256 ECDSA certificate, signed by its own key, for TLS servers named `names`. */
export function makeSelfSigned(names: string[], now = new Date()): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const ecdsaWithSha256 = seq(oid("1.2.840.10045.4.3.2"));
  const name = seq(set(seq(oid("2.5.4.10"), utf8("Cairn"))), set(seq(oid("2.5.4.3"), utf8(`Cairn on ${hostname()}`.slice(0, 64)))));
  const notBefore = new Date(now.getTime() - 3600 * 1000); // a client whose clock is a little behind still accepts it
  const notAfter = new Date(now.getTime() + SELF_SIGNED_DAYS * 24 * 3600 * 1000);
  const alternativeNames = names.map((entry) => {
    const ip = ipBytes(entry);
    return ip ? tagged(0x87, ip) : tagged(0x82, Buffer.from(entry, "ascii"));
  });
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // a positive INTEGER
  const tbs = seq(
    tagged(0xa0, integer(Buffer.from([2]))), // v3
    integer(serial),
    ecdsaWithSha256,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    tagged(
      0xa3,
      seq(
        seq(oid("2.5.29.17"), octets(seq(...alternativeNames))), // subjectAltName
        seq(oid("2.5.29.37"), octets(seq(oid("1.3.6.1.5.5.7.3.1")))), // extKeyUsage: serverAuth
        seq(oid("2.5.29.19"), tagged(0x01, Buffer.from([0xff])), octets(seq())), // basicConstraints (critical): not a CA
      ),
    ),
  );
  const signature = sign("sha256", tbs, privateKey); // DER ECDSA-Sig-Value, as X.509 wants it
  const certificate = seq(tbs, ecdsaWithSha256, tagged(0x03, Buffer.concat([Buffer.from([0]), signature])));
  return { cert: pem("CERTIFICATE", certificate), key: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

function parsePair(cert: string, key: string, names: { cert: string; key: string }): { x509: X509Certificate; privateKey: KeyObject } {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw invalid(`${names.cert} does not hold a PEM certificate (-----BEGIN CERTIFICATE-----).`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw invalid(
      `${names.key} does not hold an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----): Cairn cannot ask for a passphrase.`,
    );
  }
  return { x509, privateKey };
}

async function readPem(variable: string, file: string): Promise<string> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied for Cairn's user" : (code ?? "unreadable");
    throw invalid(`${variable}: cannot read ${file} (${why}).`);
  }
}

async function readIfPresent(certPath: string, keyPath: string): Promise<{ cert: string; key: string } | undefined> {
  try {
    return { cert: await fs.readFile(certPath, "utf8"), key: await fs.readFile(keyPath, "utf8") };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

async function writeAtomically(file: string, content: string, mode: number): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temporary, content, { mode });
  await fs.rename(temporary, file);
}

function invalid(message: string): CairnError {
  return new CairnError(ErrorCode.InvalidConfig, message);
}

// DER, the few types a certificate needs.

function tagged(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  let length: Buffer;
  if (body.length < 0x80) length = Buffer.from([body.length]);
  else {
    const bytes: number[] = [];
    for (let n = body.length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
    length = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), length, body]);
}

const seq = (...content: Buffer[]) => tagged(0x30, ...content);
const set = (...content: Buffer[]) => tagged(0x31, ...content);
const octets = (content: Buffer) => tagged(0x04, content);
const utf8 = (text: string) => tagged(0x0c, Buffer.from(text, "utf8"));

function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return tagged(0x02, trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split(".").map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const groups = [arc & 0x7f];
    for (let n = arc >>> 7; n > 0; n >>>= 7) groups.unshift((n & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return tagged(0x06, Buffer.from(bytes));
}

/** UTCTime until 2049, GeneralizedTime after, as RFC 5280 requires. */
function time(date: Date): Buffer {
  const text = date
    .toISOString()
    .replace(/[-:T]/g, "")
    .replace(/\.\d{3}/, "");
  return date.getUTCFullYear() < 2050 ? tagged(0x17, Buffer.from(text.slice(2), "ascii")) : tagged(0x18, Buffer.from(text, "ascii"));
}

function ipBytes(address: string): Buffer | undefined {
  if (net.isIPv4(address)) return Buffer.from(address.split(".").map(Number));
  if (!net.isIPv6(address) || address.includes(".")) return undefined;
  const [head, tail] = address.split("::");
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const missing = 8 - groups(head).length - groups(tail).length;
  const all = tail === undefined ? groups(head) : [...groups(head), ...Array(missing).fill("0"), ...groups(tail)];
  const bytes = Buffer.alloc(16);
  all.forEach((group, index) => bytes.writeUInt16BE(Number.parseInt(group, 16), index * 2));
  return bytes;
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
