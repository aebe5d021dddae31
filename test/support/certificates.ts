/** Self-signed certificates for TLS tests, made by openssl, whose own fingerprint output is the oracle. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface TestCertificate {
  key: string;
  cert: string;
  /** openssl's SHA-256 fingerprint, `AB:CD:…` */
  fingerprint: string;
}

/** A P-256 self-signed certificate for `name` (files in `dir`), valid two days, for 127.0.0.0/8 addresses. */
export function makeCertificate(dir: string, name: string): TestCertificate {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert].concat([
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3",
    ]),
    { stdio: "pipe" },
  );
  const printed = execFileSync("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" });
  return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8"), fingerprint: printed.trim().split("=")[1] };
}
