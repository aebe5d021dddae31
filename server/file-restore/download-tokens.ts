/**
 * Short-lived, single-use download tokens for `restoreFiles`. The token (32 random bytes, base64url) is the credential of
 * `GET /download/<token>`: unguessable, it expires after {@link DOWNLOAD_TOKEN_TTL_MS}, and the first download consumes
 * it. It records who asked (for the log) and what to download.
 *
 * Kept in this process's memory: a download must reach the process that issued the link (see the report of issue 6 for
 * the multi-process follow-up: a Postgres table keyed by the token's hash).
 */
import { randomBytes } from "node:crypto";
import type { ArchiveFormat } from "./archive-writer.js";

export const DOWNLOAD_TOKEN_TTL_MS = 5 * 60_000;

export interface DownloadRequest {
  restorePointId: string;
  disk: number;
  /** The partition actually opened when the link was made (0: whole disk). */
  partition: number;
  paths: string[];
  format: ArchiveFormat;
  userId: string | null;
  username: string | null;
}

export type TokenLookup = { ok: true; request: DownloadRequest } | { ok: false; reason: "UNKNOWN" | "EXPIRED" };

export class DownloadTokens {
  private readonly tokens = new Map<string, { request: DownloadRequest; expiresAt: number }>();

  issue(request: DownloadRequest): { token: string; expiresAt: Date } {
    this.sweep();
    const token = randomBytes(32).toString("base64url");
    const expiresAt = Date.now() + DOWNLOAD_TOKEN_TTL_MS;
    this.tokens.set(token, { request, expiresAt });
    return { token, expiresAt: new Date(expiresAt) };
  }

  /** Takes the token: it works once; an expired one is forgotten and refused. */
  consume(token: string): TokenLookup {
    const entry = this.tokens.get(token);
    this.tokens.delete(token);
    this.sweep();
    if (!entry) return { ok: false, reason: "UNKNOWN" };
    if (entry.expiresAt <= Date.now()) return { ok: false, reason: "EXPIRED" };
    return { ok: true, request: entry.request };
  }

  private sweep(): void {
    // Expired tokens go a while after their expiry, so that a late click still hears "expired" rather than "unknown".
    const now = Date.now();
    for (const [token, entry] of this.tokens) if (entry.expiresAt + DOWNLOAD_TOKEN_TTL_MS < now) this.tokens.delete(token);
  }
}
