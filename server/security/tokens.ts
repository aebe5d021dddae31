/** Bearer tokens: 32 random bytes shown once; only their SHA-256 is stored, so a database leak reveals no usable token. */
import { createHash, randomBytes } from "node:crypto";

const PREFIX = "cairn_";

export function generateToken(): string {
  return PREFIX + randomBytes(32).toString("base64url");
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export function looksLikeToken(value: string): boolean {
  return value.startsWith(PREFIX) && value.length > PREFIX.length + 20 && value.length < 200;
}
