/**
 * Which TLS certificate a pool may present. Real pools serve XAPI over HTTPS with a self-signed certificate, so a CA check
 * alone refuses them and "accept anything" (`allowUnauthorized`) lets anyone on the path read the pool's root password.
 * Cairn pins the certificate instead: the fingerprint seen on first use (or given by the admin) is stored with the pool,
 * and every later connection (JSON-RPC, exports, uploads) must present that certificate, unless it is valid for a CA this
 * machine trusts (a pool behind a real certificate renews it without anyone re-pinning).
 */
import { type ConnectionOptions, connect as tlsConnect, type TLSSocket } from "node:tls";
import { Agent, buildConnector } from "undici";
import { CairnError, ErrorCode } from "../errors.js";

export interface TlsTrust {
  /** Accept any certificate (the old switch; discouraged, kept for pools whose admin chose it). */
  allowUnauthorized: boolean;
  /** SHA-256 fingerprint of the pinned certificate, `AB:CD:…` (Node's `fingerprint256`). */
  fingerprint?: string | null;
  /**
   * The server certificates of the pool's hosts as the pool lists them (`Certificate` records of type `host`, read over
   * the pinned connection): a member a transfer is redirected to, or a new master, presents its own certificate.
   */
  hostFingerprints?: readonly string[];
}

/** What a server presented when asked, before anything was trusted. */
export interface PresentedCertificate {
  fingerprint: string;
  /** Valid for a CA this machine trusts and for the host name. */
  caTrusted: boolean;
  subject: string;
  validTo: string;
}

const FINGERPRINT = /^(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$/;

/**
 * A SHA-256 fingerprint in the canonical form (`AB:CD:…`), from the forms people paste: colons or not, any case, with
 * openssl's `sha256 Fingerprint=` prefix. Undefined when it is not one.
 */
export function canonicalFingerprint(text: string): string | undefined {
  const hex = text
    .trim()
    .replace(/^sha-?256\s*fingerprint\s*=\s*/i, "")
    .replace(/[\s:]/g, "")
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  const canonical = hex.match(/../g)?.join(":") ?? "";
  return FINGERPRINT.test(canonical) ? canonical : undefined;
}

/** The refusal of a certificate a pool presents: data (code UNAVAILABLE, both fingerprints), never a parse of text. */
export class CertificateRefusedError extends CairnError {
  constructor(
    readonly poolName: string,
    readonly presented: string,
    readonly expected: string | undefined,
  ) {
    super(
      ErrorCode.Unavailable,
      expected
        ? `The TLS certificate of pool ${poolName} changed: Cairn trusts ${expected}, the pool now presents ${presented}. ` +
            "If the pool's certificate was replaced on purpose, check the new fingerprint on the host and trust it (trustPoolCertificate); otherwise someone may be intercepting the connection."
        : `Pool ${poolName} presents a TLS certificate (${presented}) that no trusted CA signed and that Cairn has not pinned: ` +
            "trust its fingerprint (trustPoolCertificate) after checking it on the host.",
      { presentedFingerprint: presented, ...(expected ? { trustedFingerprint: expected } : {}) },
    );
    this.name = "CertificateRefusedError";
  }
}

/** Why `socket`'s certificate is not acceptable under `trust`, or undefined when it is. */
export function certificateRefusal(socket: TLSSocket, trust: TlsTrust, poolName: string): CertificateRefusedError | undefined {
  if (trust.allowUnauthorized || socket.authorized) return undefined;
  const presented = socket.getPeerCertificate()?.fingerprint256 ?? "";
  const expected = trust.fingerprint ? canonicalFingerprint(trust.fingerprint) : undefined;
  if (expected !== undefined && presented === expected) return undefined;
  if (expected !== undefined && trust.hostFingerprints?.includes(presented)) return undefined;
  return new CertificateRefusedError(poolName, presented || "no certificate", expected);
}

/**
 * TLS options for a connection checked by {@link certificateRefusal} once the handshake is done: Node's own check would
 * refuse a self-signed certificate before a pin could be compared (it calls `checkServerIdentity` only for CA-valid chains).
 * `minVersion` as xen-api sets it: old XenServer hosts speak TLS 1.0.
 */
export const PINNING_TLS_OPTIONS: ConnectionOptions = { rejectUnauthorized: false, minVersion: "TLSv1" };

/**
 * An undici dispatcher for the xen-api client whose every TLS connection is checked against `trust` (xen-api builds its
 * own from `allowUnauthorized`; Cairn swaps it: see server/xapi/README.md).
 */
export function pinnedDispatcher(trustOf: () => TlsTrust, poolName: string, options: { inactivityTimeoutMs: number }): Agent {
  // No TLS session resumption: a resumed session shows no peer certificate to compare, and a session cached from a
  // connection that was then refused would let the refused server in on the next connect.
  const connector = buildConnector({ ...PINNING_TLS_OPTIONS, maxCachedSessions: 0 } as buildConnector.BuildOptions);
  return new Agent({
    bodyTimeout: options.inactivityTimeoutMs,
    headersTimeout: options.inactivityTimeoutMs,
    maxRedirections: 3,
    connect: (connectOptions, callback) => {
      connector(connectOptions, (error, socket) => {
        if (error !== null) {
          callback(error, null);
          return;
        }
        if (connectOptions.protocol === "https:") {
          const refused = certificateRefusal(socket as TLSSocket, trustOf(), poolName);
          if (refused) {
            socket.destroy();
            callback(refused, null);
            return;
          }
        }
        callback(null, socket);
      });
    },
  });
}

/** The certificate `url`'s server presents (nothing sent but the handshake). */
export function presentedCertificate(url: string, timeoutMs = 15_000): Promise<PresentedCertificate> {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      ...PINNING_TLS_OPTIONS,
      host,
      port: Number(target.port || 443),
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    });
    const timer = setTimeout(
      () => socket.destroy(new Error(`no TLS handshake from ${target.host} within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const certificate = socket.getPeerCertificate();
      resolve({
        fingerprint: certificate.fingerprint256,
        caTrusted: socket.authorized,
        subject: certificate.subject?.CN ?? "",
        validTo: certificate.valid_to ?? "",
      });
      socket.end();
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
