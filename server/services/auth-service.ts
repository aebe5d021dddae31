/**
 * Users, sign-in sessions and API tokens. A session and an API token are the same kind of row (ApiToken) with a different
 * `kind`: both are bearer tokens stored as SHA-256 hashes, both can be revoked, sessions expire.
 */
import { randomBytes } from "node:crypto";
import type { Db } from "../db/prisma.js";
import type { Role } from "../db/generated/enums.js";
import { CairnError, ErrorCode, InputError } from "../errors.js";
import type { Logger } from "../log.js";
import { hashPassword, verifyPassword } from "../security/passwords.js";
import { generateToken, hashToken, looksLikeToken } from "../security/tokens.js";
import { validUuid } from "../domain/ids.js";
import { withoutNul } from "./input-checks.js";
import { ROLE_RANK, type Principal } from "../domain/principal.js";

export interface AuthServiceOptions {
  sessionHours: number;
}

export class AuthService {
  private readonly credentialListeners = new Set<() => void>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly options: AuthServiceOptions,
  ) {}

  /**
   * Called after any change that can kill or narrow a credential (revoke, logout, a user disabled, deleted or demoted, a
   * password reset): open graphql-ws connections re-check their principal at once instead of at their next periodic check.
   */
  onCredentialsChanged(listener: () => void): () => void {
    this.credentialListeners.add(listener);
    return () => this.credentialListeners.delete(listener);
  }

  protected credentialsChanged(): void {
    for (const listener of this.credentialListeners) listener();
  }

  /** On first start (no user at all), creates `admin`; returns the password when it was generated, to print once. */
  async ensureAdmin(configuredPassword: string | undefined): Promise<{ created: boolean; generatedPassword?: string }> {
    if ((await this.db.user.count()) > 0) return { created: false };
    const password = configuredPassword ?? randomBytes(12).toString("base64url");
    try {
      await this.db.user.create({ data: { username: "admin", role: "ADMIN", passwordHash: await hashPassword(password) } });
    } catch (error) {
      // Another process created it first: that one printed the password.
      if ((error as { code?: string }).code === "P2002") return { created: false };
      throw error;
    }
    return { created: true, generatedPassword: configuredPassword ? undefined : password };
  }

  async login(username: string, password: string) {
    if (!username) throw new InputError("username", "is required");
    if (!password) throw new InputError("password", "is required");
    withoutNul(username, "username");
    const user = await this.db.user.findUnique({ where: { username } });
    const ok = user ? await verifyPassword(password, user.passwordHash) : await verifyPassword(password, DUMMY_HASH);
    if (!user || !ok) {
      this.log.info({ username }, "sign-in refused");
      throw new CairnError(ErrorCode.Unauthenticated, "Wrong user name or password.");
    }
    const token = generateToken();
    await this.db.apiToken.create({
      data: {
        userId: user.id,
        kind: "SESSION",
        name: "sign-in",
        role: user.role,
        tokenHash: hashToken(token),
        expiresAt: new Date(Date.now() + this.options.sessionHours * 3600_000),
      },
    });
    return { token, user };
  }

  /** The principal a bearer token stands for; throws UNAUTHENTICATED for an unknown, revoked or expired token. */
  async authenticate(authorization: string | undefined): Promise<Principal | undefined> {
    if (!authorization) return undefined;
    const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
    if (!match || !looksLikeToken(match[1])) {
      throw new CairnError(ErrorCode.Unauthenticated, "The Authorization header must be `Bearer <token>` with a Cairn token.");
    }
    const row = await this.db.apiToken.findUnique({ where: { tokenHash: hashToken(match[1]) }, include: { user: true } });
    if (!row) throw new CairnError(ErrorCode.Unauthenticated, "This token is not valid. Sign in again.");
    if (row.revokedAt) throw new CairnError(ErrorCode.Unauthenticated, "This token was revoked. Sign in again or use another token.");
    if (row.expiresAt && row.expiresAt <= new Date()) {
      throw new CairnError(ErrorCode.Unauthenticated, "This session has expired. Sign in again.");
    }
    const role = ROLE_RANK[row.role] <= ROLE_RANK[row.user.role] ? row.role : row.user.role;
    return { userId: row.userId, username: row.user.username, role, tokenId: row.id, tokenKind: row.kind };
  }

  async createApiToken(principal: Principal, name: string, role: Role) {
    const trimmed = name?.trim() ?? "";
    if (trimmed.length === 0 || trimmed.length > 100) throw new InputError("name", "must be 1 to 100 characters");
    if (ROLE_RANK[role] > ROLE_RANK[principal.role]) {
      throw new CairnError(
        ErrorCode.Forbidden,
        `A token cannot have more rights than its owner: you are ${principal.role}, asked ${role}.`,
      );
    }
    const token = generateToken();
    const row = await this.db.apiToken.create({
      data: { userId: principal.userId, kind: "API", name: trimmed, role, tokenHash: hashToken(token) },
    });
    return { token, row };
  }

  async listApiTokens(principal: Principal) {
    return this.db.apiToken.findMany({
      where: principal.role === "ADMIN" ? { kind: "API" } : { kind: "API", userId: principal.userId },
      orderBy: { createdAt: "desc" },
    });
  }

  async revokeApiToken(principal: Principal, id: string): Promise<boolean> {
    const row = await this.db.apiToken.findFirst({ where: { id: validUuid(id, "id"), kind: "API" } });
    if (!row || (row.userId !== principal.userId && principal.role !== "ADMIN")) {
      throw new CairnError(ErrorCode.NotFound, `No API token with id ${id}.`);
    }
    await this.db.apiToken.update({ where: { id: row.id }, data: { revokedAt: row.revokedAt ?? new Date() } });
    this.credentialsChanged();
    return true;
  }

  async logout(principal: Principal): Promise<boolean> {
    await this.db.apiToken.update({ where: { id: principal.tokenId }, data: { revokedAt: new Date() } });
    this.credentialsChanged();
    return true;
  }
}

// Verifying against a dummy hash when the user does not exist keeps the answer time the same, so names cannot be probed.
const DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
