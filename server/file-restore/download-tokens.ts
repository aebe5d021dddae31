/**
 * Short-lived, single-use download tokens for `restoreFiles`. The token (32 random bytes, base64url) is the credential of
 * `GET /download/<token>`: unguessable, it expires after {@link DOWNLOAD_TOKEN_TTL_MS}, and the first download consumes
 * it. Kept in Postgres (only the token's SHA-256), so a link made on one Cairn process downloads from any other.
 */

import type { Db } from "../db/prisma.js";
import { generateToken, hashToken } from "../security/tokens.js";
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
  constructor(private readonly db: Db) {}

  async issue(request: DownloadRequest): Promise<{ token: string; expiresAt: Date }> {
    await this.sweep();
    const token = generateToken();
    const expiresAt = new Date(Date.now() + DOWNLOAD_TOKEN_TTL_MS);
    await this.db.downloadToken.create({ data: { tokenHash: hashToken(token), request: request as object, expiresAt } });
    return { token, expiresAt };
  }

  /**
   * Takes the token: it works once (the conditional update makes two simultaneous requests get it once); expired is refused.
   * Only a file restore's token is taken: the same table holds run-history export links, which this route must neither serve
   * nor use up (a file restore's request is the only kind naming a restore point).
   */
  async consume(token: string): Promise<TokenLookup> {
    if (token.length > 200) return { ok: false, reason: "UNKNOWN" };
    const tokenHash = hashToken(token);
    const taken = await this.db.downloadToken.updateMany({
      where: { tokenHash, usedAt: null, request: { path: ["restorePointId"], string_starts_with: "" } },
      data: { usedAt: new Date() },
    });
    if (taken.count === 0) return { ok: false, reason: "UNKNOWN" };
    const row = await this.db.downloadToken.findUniqueOrThrow({ where: { tokenHash } });
    if (row.expiresAt.getTime() <= Date.now()) return { ok: false, reason: "EXPIRED" };
    return { ok: true, request: row.request as unknown as DownloadRequest };
  }

  /** Expired links go a while after their expiry, so that a late click still hears "expired" rather than "unknown". */
  private async sweep(): Promise<void> {
    await this.db.downloadToken.deleteMany({ where: { expiresAt: { lt: new Date(Date.now() - DOWNLOAD_TOKEN_TTL_MS) } } });
  }
}
