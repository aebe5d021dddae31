/**
 * The `Certificate` records of a lab pool's hosts, as XAPI keeps them (certificates.ml): one of type `host` per host,
 * with the server certificate's fingerprints (`AB:CD:…`, uppercase, colon between octets: `pp_hash`) and validity. A
 * client that pinned the master's certificate reads the members' from here (Cairn follows redirects to members).
 */
import { X509Certificate } from "node:crypto";
import type { LabPool } from "./pool-state.js";

/** Records `certificatePem` as the server certificate of `hostRef`, replacing the one recorded before (a restart with a new certificate). */
export function recordHostCertificate(pool: LabPool, hostRef: string, certificatePem: string | Buffer): void {
  const certificate = new X509Certificate(certificatePem);
  for (const old of pool.store.all("Certificate")) {
    if (old.record.host === hostRef && old.record.type === "host") pool.store.destroy("Certificate", old.ref);
  }
  const ref = pool.store.create("Certificate", {
    name: "",
    type: "host",
    host: hostRef,
    not_before: xapiDate(certificate.validFrom),
    not_after: xapiDate(certificate.validTo),
    fingerprint: certificate.fingerprint256,
    fingerprint_sha256: certificate.fingerprint256,
    fingerprint_sha1: certificate.fingerprint,
    purpose: [],
  });
  pool.store.update("host", hostRef, (host) => {
    const listed = Array.isArray(host.certificates) ? (host.certificates as string[]) : [];
    host.certificates = [...listed.filter((existing) => pool.store.has("Certificate", existing)), ref];
  });
}

/** XAPI's datetime on the wire (`20261203T07:30:00Z`). */
function xapiDate(text: string): string {
  return new Date(text)
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/-/g, "");
}
