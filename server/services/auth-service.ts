/**
 * Sign-in, sessions and API tokens. A session and an API token are the same kind of row (ApiToken) with a different `kind`:
 * both are bearer tokens stored as SHA-256 hashes, both can be revoked, sessions expire. Users and their sessions are managed
 * by `user-service.ts` (`auth.users`), which shares this service's sign-in throttle and credential-change signal.
 *
 * The rules (docs/API.md, "Authentication"):
 * - A credential is refused once revoked, expired, when its user is disabled, and (a session) when it began before its user's
 *   `passwordChangedAt`.
 * - API tokens cannot create API tokens: createApiToken needs a session signed in with a password. A token therefore never
 *   outlives the credential that made it in a way its owner cannot see: every token was made by its owner, in person.
 * - A principal lists and revokes only tokens at or below its own role (an ADMIN: everyone's).
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../domain/clock.js";
import { systemClock } from "../domain/clock.js";
import { validUuid } from "../domain/ids.js";
import { ROLE_RANK, type Principal } from "../domain/principal.js";
import type { Role } from "../db/generated/enums.js";
import type { Db } from "../db/prisma.js";
import type { EventBus } from "../events/event-bus.js";
import { CairnError, ErrorCode, InputError } from "../errors.js";
import type { Logger } from "../log.js";
import { hashPassword, verifyPassword } from "../security/passwords.js";
import { generateToken, hashToken, looksLikeToken } from "../security/tokens.js";
import { withoutNul } from "./input-checks.js";
import { LoginThrottle, type LoginThrottleOptions } from "./login-throttle.js";
import { effectiveRole, MAX_PASSWORD_LENGTH, MAX_USERNAME_LENGTH, mayManageCredential, UserService } from "./user-service.js";

export interface AuthServiceOptions {
  sessionHours: number;
  /** Where time is read (tests pass a manual clock: expiry, throttle delays and `lastUsedAt` follow it). */
  clock?: Clock;
  /** Sign-in throttle limits; unset = LoginThrottle's defaults (tests pass small ones). */
  throttle?: Omit<LoginThrottleOptions, "clock">;
  /**
   * Credential changes committed by any process (the event bus relays a Postgres trigger's NOTIFY). With it, verified
   * credentials are cached; without it (a one-off AuthService, e.g. at start), every request reads the database.
   */
  notices?: CredentialNotices;
}

/** What the cache needs from the event bus (server/events/event-bus.ts). */
export type CredentialNotices = Pick<EventBus, "onCredentialNotice" | "syncNotices">;

/** `lastUsedAt` is written at most this often per credential: a busy token costs one write a minute, not one per request. */
const LAST_USED_RESOLUTION_MS = 60_000;

const ADMIN_USERNAME = "admin";
const MAX_CACHED_CREDENTIALS = 10_000;

export class AuthService {
  /** Users, their passwords and sessions (ADMIN management and self-service). */
  readonly users: UserService;
  private readonly credentialListeners = new Set<() => void>();
  private readonly clock: Clock;
  private readonly throttle: LoginThrottle;
  /**
   * Token lookups under way, by token hash: concurrent requests with one token (a script, a busy dashboard) share one query
   * instead of one each. Only in-flight lookups are shared, never a finished answer, so a change made anywhere (another
   * process, the database) is seen by every request that arrives after it; a change made here drops them at once.
   */
  private readonly lookups = new Map<string, Promise<TokenWithUser | null>>();
  /** `lastUsedAt` writes under way, by token id: requests that shared a lookup write it once, not once each. */
  private readonly lastUsedWrites = new Map<string, Promise<unknown>>();
  /**
   * Credential rows as read from the database, by token hash (refused ones too: the reason is answered again), so that a
   * request costs no query. Exact, not eventually right: every change to ApiToken or User, by any process or by hand, sends a
   * notification (migration credential_notify) that drops the whole cache, and before a cached row is used the event bus
   * makes sure every notification committed until then has arrived (`syncNotices`: one shared round trip on its
   * LISTEN connection, far cheaper than the row's query). When that cannot be known (LISTEN lost), the database is read.
   */
  private readonly cache = new Map<string, TokenWithUser>();
  /** Bumped whenever the cache is dropped: a lookup that began before may have read the old row and must not be cached. */
  private cacheGeneration = 0;
  private readonly notices: CredentialNotices | undefined;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly options: AuthServiceOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.notices = options.notices;
    // A change made by another process (or in the database) also re-checks this process's open sockets; a `reset` (LISTEN
    // lost or back) may hide such a change, so it does too.
    this.notices?.onCredentialNotice(() => {
      this.dropCache();
      for (const listener of this.credentialListeners) listener();
    });
    this.throttle = new LoginThrottle({ ...options.throttle, clock: this.clock });
    this.users = new UserService({
      db,
      log,
      clock: this.clock,
      throttle: this.throttle,
      credentialsChanged: () => this.credentialsChanged(),
    });
  }

  /**
   * Called after any change that can kill or narrow a credential (revoke, logout, a user disabled, deleted or demoted, a
   * password reset): open graphql-ws connections re-check their principal at once instead of at their next periodic check.
   */
  onCredentialsChanged(listener: () => void): () => void {
    this.credentialListeners.add(listener);
    return () => this.credentialListeners.delete(listener);
  }

  protected credentialsChanged(): void {
    // At once here; other processes learn it from the trigger's notification.
    this.dropCache();
    for (const listener of this.credentialListeners) listener();
  }

  private dropCache(): void {
    // A lookup that started before the change may answer with the credential as it was: later requests must not join it.
    this.lookups.clear();
    this.cache.clear();
    this.cacheGeneration++;
  }

  /**
   * On first start (no user at all), creates `admin`; returns the password when it was generated, to print once.
   *
   * On a later start with ADMIN_PASSWORD set, that password is the way to regain the machine's administration: when `admin`
   * does not have it, or is disabled, or is no longer ADMIN, `admin` gets the password, is enabled and made ADMIN again (and
   * created if it was deleted), its sessions are revoked, and a warning says so (never the password). When `admin` already
   * has that password and is an enabled ADMIN, nothing changes, so leaving ADMIN_PASSWORD set does not sign admin out at
   * every restart (but it does undo a password change made in the dashboard: README.md, "Lost the admin password?").
   */
  async ensureAdmin(configuredPassword: string | undefined): Promise<{ created: boolean; generatedPassword?: string }> {
    if ((await this.db.user.count()) > 0) {
      if (configuredPassword !== undefined) await this.applyAdminPassword(configuredPassword);
      return { created: false };
    }
    const password = configuredPassword ?? randomBytes(12).toString("base64url");
    try {
      await this.db.user.create({ data: { username: ADMIN_USERNAME, role: "ADMIN", passwordHash: await hashPassword(password) } });
    } catch (error) {
      // Another process created it first: that one printed the password.
      if ((error as { code?: string }).code === "P2002") return { created: false };
      throw error;
    }
    return { created: true, generatedPassword: configuredPassword ? undefined : password };
  }

  private async applyAdminPassword(password: string): Promise<void> {
    const admin = await this.db.user.findUnique({ where: { username: ADMIN_USERNAME } });
    if (!admin) {
      try {
        await this.db.user.create({ data: { username: ADMIN_USERNAME, role: "ADMIN", passwordHash: await hashPassword(password) } });
        this.log.warn(
          { username: ADMIN_USERNAME },
          "ADMIN_PASSWORD is set and there was no user admin: created it (ADMIN) with that password",
        );
      } catch (error) {
        // Another process starting at the same time created it.
        if ((error as { code?: string }).code !== "P2002") throw error;
      }
      return;
    }
    const passwordDiffers = !(await verifyPassword(password, admin.passwordHash));
    const changes = [
      ...(passwordDiffers ? ["password reset"] : []),
      ...(admin.disabledAt ? ["enabled again"] : []),
      ...(admin.role !== "ADMIN" ? [`role ${admin.role} -> ADMIN`] : []),
    ];
    if (changes.length === 0) {
      this.log.debug("ADMIN_PASSWORD is set and is already admin's password: nothing to change");
      return;
    }
    const now = this.clock.now();
    await this.db.$transaction([
      this.db.user.update({
        where: { id: admin.id },
        data: {
          role: "ADMIN",
          disabledAt: null,
          ...(passwordDiffers ? { passwordHash: await hashPassword(password), passwordChangedAt: now } : {}),
        },
      }),
      // A lost password may be a stolen one: whoever signed in with it is signed out. API tokens, made by the owner in a
      // session and listed to it, are kept: scripts keep working, and the admin revokes them from the dashboard if needed.
      this.db.apiToken.updateMany({ where: { userId: admin.id, kind: "SESSION", revokedAt: null }, data: { revokedAt: now } }),
    ]);
    this.credentialsChanged();
    this.log.warn(
      { username: ADMIN_USERNAME, changes },
      `ADMIN_PASSWORD is set: user admin ${changes.join(", ")}; its sessions were signed out. Unset ADMIN_PASSWORD to manage admin's password from the dashboard.`,
    );
  }

  async login(username: string, password: string, clientAddress?: string) {
    if (typeof username !== "string" || !username) throw new InputError("username", "is required");
    if (typeof password !== "string" || !password) throw new InputError("password", "is required");
    withoutNul(username, "username");
    if (username.length > MAX_USERNAME_LENGTH) throw new InputError("username", `must be at most ${MAX_USERNAME_LENGTH} characters`);
    if (password.length > MAX_PASSWORD_LENGTH) throw new InputError("password", `must be at most ${MAX_PASSWORD_LENGTH} characters`);
    // Before the password is looked at: an attempt inside the delay learns nothing.
    this.throttle.check(username, clientAddress);
    const user = await this.db.user.findUnique({ where: { username } });
    const ok = user ? await verifyPassword(password, user.passwordHash) : await verifyPassword(password, DUMMY_HASH);
    if (!user || !ok) {
      this.throttle.failed(username, clientAddress);
      this.log.info({ username, clientAddress }, "sign-in refused");
      throw new CairnError(ErrorCode.Unauthenticated, "Wrong user name or password.");
    }
    this.throttle.succeeded(username, clientAddress);
    if (user.disabledAt) {
      // Said only to someone who knew the password: it tells them whom to ask.
      throw new CairnError(ErrorCode.Unauthenticated, `The user ${user.username} is disabled; ask an administrator to enable it.`);
    }
    const token = generateToken();
    const now = this.clock.now();
    await this.db.apiToken.create({
      data: {
        userId: user.id,
        kind: "SESSION",
        name: "sign-in",
        role: user.role,
        tokenHash: hashToken(token),
        createdAt: now,
        expiresAt: new Date(now.getTime() + this.options.sessionHours * 3600_000),
        createdFrom: clientAddress ?? null,
      },
    });
    return { token, user };
  }

  /**
   * The principal a bearer token stands for, as of `asOf` (a `performance.now()` reading: the request's arrival; by default
   * now); throws UNAUTHENTICATED for an unknown, revoked or expired token.
   */
  async authenticate(authorization: string | undefined, asOf?: number): Promise<Principal | undefined> {
    if (!authorization) return undefined;
    const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
    if (!match || !looksLikeToken(match[1])) {
      throw new CairnError(ErrorCode.Unauthenticated, "The Authorization header must be `Bearer <token>` with a Cairn token.");
    }
    const row = await this.credential(hashToken(match[1]), asOf);
    if (!row) throw new CairnError(ErrorCode.Unauthenticated, "This token is not valid. Sign in again.");
    // Disabled first: it is the reason that matters to the holder (disabling also revoked the user's sessions).
    if (row.user.disabledAt) {
      throw new CairnError(ErrorCode.Unauthenticated, `The user ${row.user.username} is disabled; ask an administrator to enable it.`);
    }
    if (row.revokedAt) throw new CairnError(ErrorCode.Unauthenticated, "This token was revoked. Sign in again or use another token.");
    const now = this.clock.now();
    if (row.expiresAt && row.expiresAt <= now) {
      throw new CairnError(ErrorCode.Unauthenticated, "This session has expired. Sign in again.");
    }
    if (row.kind === "SESSION" && row.user.passwordChangedAt && row.createdAt < row.user.passwordChangedAt) {
      throw new CairnError(ErrorCode.Unauthenticated, "This session ended when the password was changed. Sign in again.");
    }
    if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS) {
      let writing = this.lastUsedWrites.get(row.id);
      if (!writing) {
        // Conditional, so that concurrent requests (or processes) write once.
        writing = this.db.apiToken
          .updateMany({
            where: { id: row.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lte: new Date(now.getTime() - LAST_USED_RESOLUTION_MS) } }] },
            data: { lastUsedAt: now },
          })
          .finally(() => this.lastUsedWrites.delete(row.id));
        this.lastUsedWrites.set(row.id, writing);
      }
      await writing;
      // Also when another process wrote it first (nothing updated here): either way it is recent now.
      row.lastUsedAt = now;
    }
    return { userId: row.userId, username: row.user.username, role: effectiveRole(row), tokenId: row.id, tokenKind: row.kind };
  }

  /** The token row with its user: from the cache when it is known to be current, else from the database (and then cached). */
  private async credential(tokenHash: string, asOf?: number): Promise<TokenWithUser | null> {
    if (!this.notices) return this.lookup(tokenHash);
    const cached = this.cache.get(tokenHash);
    if (cached && (await this.notices.syncNotices(asOf)) && this.cache.get(tokenHash) === cached) return cached;
    const generation = this.cacheGeneration;
    const row = await this.lookup(tokenHash);
    // Unknown hashes are not cached: a token created elsewhere sends no notification.
    if (row && generation === this.cacheGeneration) {
      // Bounded: expired sessions stay in it until the next change; starting over costs one query per credential in use.
      if (this.cache.size >= MAX_CACHED_CREDENTIALS) this.cache.clear();
      this.cache.set(tokenHash, row);
    }
    return row;
  }

  /** The token row with its user, sharing a lookup of the same hash already under way (see `lookups`). */
  private lookup(tokenHash: string): Promise<TokenWithUser | null> {
    const pending = this.lookups.get(tokenHash);
    if (pending) return pending;
    const lookup: Promise<TokenWithUser | null> = this.db.apiToken
      .findUnique({ where: { tokenHash }, include: { user: true } })
      .finally(() => {
        if (this.lookups.get(tokenHash) === lookup) this.lookups.delete(tokenHash);
      });
    this.lookups.set(tokenHash, lookup);
    return lookup;
  }

  async createApiToken(principal: Principal, name: string, role: Role, clientAddress?: string) {
    if (principal.tokenKind !== "SESSION") {
      throw new CairnError(
        ErrorCode.Forbidden,
        "API tokens cannot create API tokens: sign in with your password and create the token from that session.",
      );
    }
    const trimmed = typeof name === "string" ? name.trim() : "";
    if (trimmed.length === 0 || trimmed.length > 100) throw new InputError("name", "must be 1 to 100 characters");
    withoutNul(trimmed, "name");
    if (ROLE_RANK[role] > ROLE_RANK[principal.role]) {
      throw new CairnError(
        ErrorCode.Forbidden,
        `A token cannot have more rights than its owner: you are ${principal.role}, asked ${role}.`,
      );
    }
    const token = generateToken();
    const row = await this.db.apiToken.create({
      data: {
        userId: principal.userId,
        kind: "API",
        name: trimmed,
        role,
        tokenHash: hashToken(token),
        createdAt: this.clock.now(),
        createdFrom: clientAddress ?? null,
      },
      include: { user: true },
    });
    return { token, row };
  }

  /**
   * The API tokens this principal may see: its own at or below its role, or (ADMIN) everyone's; `userId` narrows to one user
   * (someone else's: ADMIN only).
   */
  async listApiTokens(principal: Principal, userId?: string | null) {
    const target = userId ? validUuid(userId, "user") : undefined;
    if (target && target !== principal.userId && principal.role !== "ADMIN") {
      throw new CairnError(ErrorCode.Forbidden, `Only an ADMIN can see another user's API tokens; you are ${principal.role}.`);
    }
    const owner = principal.role === "ADMIN" ? target : principal.userId;
    const rows = await this.db.apiToken.findMany({
      where: { kind: "API", ...(owner ? { userId: owner } : {}) },
      include: { user: true },
      orderBy: { createdAt: "desc" },
    });
    return rows.filter((row) => mayManageCredential(principal, row));
  }

  async revokeApiToken(principal: Principal, id: string): Promise<boolean> {
    const row = await this.db.apiToken.findFirst({ where: { id: validUuid(id, "id"), kind: "API" }, include: { user: true } });
    // Someone else's token, or one above the caller's role, is answered as absent: its existence is not the caller's business.
    if (!row || !mayManageCredential(principal, row)) {
      throw new CairnError(ErrorCode.NotFound, `No API token with id ${id}.`);
    }
    await this.db.apiToken.update({ where: { id: row.id }, data: { revokedAt: row.revokedAt ?? this.clock.now() } });
    this.credentialsChanged();
    return true;
  }

  async logout(principal: Principal): Promise<boolean> {
    await this.db.apiToken.update({ where: { id: principal.tokenId }, data: { revokedAt: this.clock.now() } });
    this.credentialsChanged();
    return true;
  }
}

type TokenWithUser = NonNullable<Awaited<ReturnType<Db["apiToken"]["findUnique"]>>> & {
  user: NonNullable<Awaited<ReturnType<Db["user"]["findUnique"]>>>;
};

// Verifying against a dummy hash when the user does not exist keeps the answer time the same, so names cannot be probed.
const DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
