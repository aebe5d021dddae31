/**
 * Users and their sign-in sessions: what an ADMIN manages (create, change role, disable, delete, reset a password) and what
 * every signed-in person manages for themselves (their password, their sessions). Sign-in and API tokens are in
 * `auth-service.ts`, which composes this service and hands it the credential-change signal.
 *
 * The rules in one place:
 * - A principal sees and manages only credentials at or below its own role (an ADMIN: everyone's), so a VIEWER token of an
 *   ADMIN neither lists nor revokes that ADMIN's sessions and tokens.
 * - There is always an enabled ADMIN: deleting, disabling or demoting the last one answers CONFLICT (an ADMIN may do it to
 *   itself while another enabled ADMIN remains).
 * - Disabling a user refuses its sessions and tokens while it is disabled (its sessions are also revoked, so enabling it again
 *   means signing in again; its API tokens work again). Deleting a user deletes its sessions and tokens; its runs and its
 *   audit entries stay (neither has a foreign key to User).
 * - An ADMIN resetting a password revokes every session and API token of that user. A user changing their own password
 *   revokes their other sessions and keeps the current one and their API tokens.
 */
import { MIN_PASSWORD_LENGTH } from "../config.js";
import type { Clock } from "../domain/clock.js";
import { validUuid } from "../domain/ids.js";
import { ROLE_RANK, type Principal, type Role } from "../domain/principal.js";
import type { Db, Prisma } from "../db/prisma.js";
import { CairnError, ErrorCode, InputError } from "../errors.js";
import type { Logger } from "../log.js";
import { hashPassword, verifyPassword } from "../security/passwords.js";
import { isUniqueViolation } from "./input-checks.js";
import type { LoginThrottle } from "./login-throttle.js";

export const MAX_USERNAME_LENGTH = 64;
/** Beyond this a password is not a password but a payload: scrypt would still hash it, there is no reason to let it. */
export const MAX_PASSWORD_LENGTH = 1024;
const USERNAME_PATTERN = /^[a-zA-Z0-9._@-]+$/;

export interface UserRow {
  id: string;
  username: string;
  role: Role;
  createdAt: Date;
  disabledAt: Date | null;
  passwordChangedAt: Date | null;
}

export interface CreateUserInput {
  username: string;
  password: string;
  role: Role;
}

export interface UpdateUserInput {
  role?: Role | null;
  disabled?: boolean | null;
}

interface CredentialRow {
  userId: string;
  role: Role;
  user: { role: Role };
}

/** What a credential may do: its own role, never above its owner's current role. */
export function effectiveRole(row: CredentialRow): Role {
  return ROLE_RANK[row.role] <= ROLE_RANK[row.user.role] ? row.role : row.user.role;
}

/** Whether `principal` may see and manage this session or token: an ADMIN any; others their own, at or below their role. */
export function mayManageCredential(principal: Principal, row: CredentialRow): boolean {
  if (principal.role === "ADMIN") return true;
  return row.userId === principal.userId && ROLE_RANK[effectiveRole(row)] <= ROLE_RANK[principal.role];
}

/** Checks a user name for a new user; returns it. */
export function checkUsername(value: unknown, field = "username"): string {
  if (typeof value !== "string" || value.length === 0) throw new InputError(field, "is required");
  if (value.length > MAX_USERNAME_LENGTH) {
    throw new InputError(field, `must be at most ${MAX_USERNAME_LENGTH} characters (got ${value.length})`);
  }
  if (!USERNAME_PATTERN.test(value)) {
    throw new InputError(field, "may hold only letters, digits and . _ @ - (no spaces), e.g. jane.doe or jane@example.net");
  }
  return value;
}

/** Checks a new password (the same rule as ADMIN_PASSWORD, plus: not the user name). */
export function checkPassword(value: unknown, username: string, field = "password"): string {
  if (typeof value !== "string" || value.length === 0) throw new InputError(field, "is required");
  if (value.length < MIN_PASSWORD_LENGTH) throw new InputError(field, `must be at least ${MIN_PASSWORD_LENGTH} characters`);
  if (value.length > MAX_PASSWORD_LENGTH) throw new InputError(field, `must be at most ${MAX_PASSWORD_LENGTH} characters`);
  if (value.toLowerCase() === username.toLowerCase()) throw new InputError(field, "must not be the user name");
  return value;
}

export class UserService {
  constructor(
    private readonly deps: {
      db: Db;
      log: Logger;
      clock: Clock;
      throttle: LoginThrottle;
      /** AuthService's signal that a credential died or narrowed: open sockets re-check at once. */
      credentialsChanged: () => void;
    },
  ) {}

  list(): Promise<UserRow[]> {
    return this.deps.db.user.findMany({ orderBy: { username: "asc" }, select: USER_FIELDS });
  }

  async get(id: string): Promise<UserRow> {
    const user = await this.deps.db.user.findUnique({ where: { id: validUuid(id, "user") }, select: USER_FIELDS });
    if (!user) throw new CairnError(ErrorCode.NotFound, `No user with id ${id}.`, { id });
    return user;
  }

  async create(input: CreateUserInput): Promise<UserRow> {
    const username = checkUsername(input?.username, "input.username");
    const password = checkPassword(input.password, username, "input.password");
    const role = checkRole(input.role, "input.role");
    // Unique without regard to case: `Admin` next to `admin` would be a trap for whoever reads a list or an audit entry.
    const clash = await this.deps.db.user.findFirst({
      where: { username: { equals: username, mode: "insensitive" } },
      select: { username: true },
    });
    if (clash) throw usernameTaken(clash.username);
    try {
      const user = await this.deps.db.user.create({
        data: { username, role, passwordHash: await hashPassword(password) },
        select: USER_FIELDS,
      });
      this.deps.log.info({ username, role }, "user created");
      return user;
    } catch (error) {
      if (isUniqueViolation(error)) throw usernameTaken(username);
      throw error;
    }
  }

  async update(id: string, input: UpdateUserInput): Promise<UserRow> {
    const userId = validUuid(id, "user");
    const role = input?.role === undefined || input.role === null ? undefined : checkRole(input.role, "input.role");
    const disabled = input?.disabled ?? undefined;
    const { user, narrowed } = await this.deps.db.$transaction(async (tx) => {
      const enabledAdmins = await lockEnabledAdmins(tx);
      const current = await tx.user.findUnique({ where: { id: userId }, select: USER_FIELDS });
      if (!current) throw new CairnError(ErrorCode.NotFound, `No user with id ${id}.`, { id });
      const nextRole = role ?? current.role;
      const nextDisabled = disabled ?? current.disabledAt !== null;
      const staysEnabledAdmin = nextRole === "ADMIN" && !nextDisabled;
      if (enabledAdmins.includes(current.id) && !staysEnabledAdmin && enabledAdmins.length === 1) {
        const what = nextDisabled ? "disabled" : `made ${nextRole}`;
        throw lastAdmin(current.username, `cannot be ${what}`);
      }
      const now = this.deps.clock.now();
      const disabling = nextDisabled && current.disabledAt === null;
      const updated = await tx.user.update({
        where: { id: current.id },
        data: {
          role: nextRole,
          disabledAt: nextDisabled ? (current.disabledAt ?? now) : null,
        },
        select: USER_FIELDS,
      });
      if (disabling) {
        await tx.apiToken.updateMany({ where: { userId: current.id, kind: "SESSION", revokedAt: null }, data: { revokedAt: now } });
      }
      return { user: updated, narrowed: disabling || ROLE_RANK[nextRole] < ROLE_RANK[current.role] };
    });
    if (narrowed) this.deps.credentialsChanged();
    this.deps.log.info({ username: user.username, role: user.role, disabled: user.disabledAt !== null }, "user updated");
    return user;
  }

  async delete(id: string): Promise<boolean> {
    const userId = validUuid(id, "user");
    const username = await this.deps.db.$transaction(async (tx) => {
      const enabledAdmins = await lockEnabledAdmins(tx);
      const user = await tx.user.findUnique({ where: { id: userId }, select: { id: true, username: true } });
      if (!user) throw new CairnError(ErrorCode.NotFound, `No user with id ${id}.`, { id });
      if (enabledAdmins.includes(user.id) && enabledAdmins.length === 1) throw lastAdmin(user.username, "cannot be deleted");
      // Its sessions and tokens go with it (ApiToken cascades); runs and audit entries do not reference users.
      await tx.user.delete({ where: { id: user.id } });
      return user.username;
    });
    this.deps.credentialsChanged();
    this.deps.log.info({ username }, "user deleted");
    return true;
  }

  /** An ADMIN sets another user's password: every session and API token of that user is revoked. */
  async resetPassword(actor: Principal, id: string, password: string): Promise<boolean> {
    const userId = validUuid(id, "user");
    if (userId === actor.userId) {
      throw new CairnError(
        ErrorCode.Forbidden,
        "To change your own password use changePassword, which asks for your current one; resetUserPassword is for other users.",
      );
    }
    const user = await this.deps.db.user.findUnique({ where: { id: userId }, select: { id: true, username: true } });
    if (!user) throw new CairnError(ErrorCode.NotFound, `No user with id ${id}.`, { id });
    const checked = checkPassword(password, user.username);
    const passwordHash = await hashPassword(checked);
    const now = this.deps.clock.now();
    await this.deps.db.$transaction([
      this.deps.db.user.update({ where: { id: user.id }, data: { passwordHash, passwordChangedAt: now } }),
      this.deps.db.apiToken.updateMany({ where: { userId: user.id, revokedAt: null }, data: { revokedAt: now } }),
    ]);
    this.deps.credentialsChanged();
    this.deps.log.info({ username: user.username, by: actor.username }, "password reset by an administrator; sessions and tokens revoked");
    return true;
  }

  /**
   * A signed-in user changes their own password: the current one is required (and guessing it is throttled like sign-in).
   * Their other sessions are revoked; this session and their API tokens keep working.
   */
  async changePassword(principal: Principal, currentPassword: string, newPassword: string, clientAddress?: string): Promise<boolean> {
    if (principal.tokenKind !== "SESSION") {
      throw new CairnError(
        ErrorCode.Forbidden,
        "Changing a password needs a session signed in with that password, not an API token. Sign in and try again.",
      );
    }
    if (typeof currentPassword !== "string" || currentPassword.length === 0) throw new InputError("currentPassword", "is required");
    if (currentPassword.length > MAX_PASSWORD_LENGTH) throw new InputError("currentPassword", "is not your current password");
    const { throttle } = this.deps;
    throttle.check(principal.username, clientAddress);
    const user = await this.deps.db.user.findUnique({ where: { id: principal.userId }, select: { passwordHash: true, username: true } });
    if (!user) throw new CairnError(ErrorCode.Unauthenticated, "This user no longer exists. Sign in again.");
    if (!(await verifyPassword(currentPassword, user.passwordHash))) {
      throttle.failed(principal.username, clientAddress);
      this.deps.log.info({ username: user.username }, "password change refused: wrong current password");
      throw new InputError("currentPassword", "is not your current password");
    }
    throttle.succeeded(principal.username, clientAddress);
    const checked = checkPassword(newPassword, user.username, "newPassword");
    if (checked === currentPassword) throw new InputError("newPassword", "must differ from the current password");
    const session = await this.deps.db.apiToken.findUnique({ where: { id: principal.tokenId }, select: { createdAt: true } });
    if (!session) throw new CairnError(ErrorCode.Unauthenticated, "This session has ended. Sign in again.");
    const passwordHash = await hashPassword(checked);
    const now = this.deps.clock.now();
    await this.deps.db.$transaction([
      // `passwordChangedAt` is the line before which sessions are refused (see authenticate): set at this session's start, it
      // keeps this session and ends every older one; the newer ones are revoked just below.
      this.deps.db.user.update({ where: { id: principal.userId }, data: { passwordHash, passwordChangedAt: session.createdAt } }),
      this.deps.db.apiToken.updateMany({
        where: { userId: principal.userId, kind: "SESSION", revokedAt: null, id: { not: principal.tokenId } },
        data: { revokedAt: now },
      }),
    ]);
    this.deps.credentialsChanged();
    this.deps.log.info({ username: user.username }, "password changed by its user; other sessions revoked");
    return true;
  }

  /** The live sessions of a user (yourself unless `userId` is given; someone else's: ADMIN only). */
  async sessions(principal: Principal, userId?: string | null) {
    const target = userId ? validUuid(userId, "user") : principal.userId;
    if (target !== principal.userId && principal.role !== "ADMIN") {
      throw new CairnError(ErrorCode.Forbidden, `Only an ADMIN can see another user's sessions; you are ${principal.role}.`);
    }
    const now = this.deps.clock.now();
    const rows = await this.deps.db.apiToken.findMany({
      where: { userId: target, kind: "SESSION", revokedAt: null, expiresAt: { gt: now }, user: { disabledAt: null } },
      include: { user: { select: { role: true, passwordChangedAt: true } } },
      orderBy: { createdAt: "desc" },
    });
    return rows
      .filter((row) => !row.user.passwordChangedAt || row.createdAt >= row.user.passwordChangedAt)
      .filter((row) => mayManageCredential(principal, row))
      .map((row) => ({
        id: row.id,
        current: row.id === principal.tokenId,
        createdAt: row.createdAt,
        expiresAt: row.expiresAt ?? now,
        lastUsedAt: row.lastUsedAt,
        createdFrom: row.createdFrom,
      }));
  }

  /** Ends a session: your own (at or below your role), or anyone's for an ADMIN. Revoking the current one signs out. */
  async revokeSession(principal: Principal, id: string): Promise<boolean> {
    const row = await this.deps.db.apiToken.findFirst({
      where: { id: validUuid(id, "session"), kind: "SESSION" },
      include: { user: { select: { role: true } } },
    });
    if (!row || !mayManageCredential(principal, row)) throw new CairnError(ErrorCode.NotFound, `No session with id ${id}.`, { id });
    if (!row.revokedAt) {
      await this.deps.db.apiToken.update({ where: { id: row.id }, data: { revokedAt: this.deps.clock.now() } });
      this.deps.credentialsChanged();
    }
    return true;
  }
}

const USER_FIELDS = { id: true, username: true, role: true, createdAt: true, disabledAt: true, passwordChangedAt: true } as const;

/**
 * Locks the rows of the enabled ADMINs for the transaction and returns their ids. Two ADMINs demoting each other at once
 * then queue on the lock, and the second sees the first's change: the last ADMIN cannot be removed by a race.
 */
async function lockEnabledAdmins(tx: Prisma.TransactionClient): Promise<string[]> {
  const rows = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM "User" WHERE role = 'ADMIN' AND "disabledAt" IS NULL FOR UPDATE`;
  return rows.map((row) => row.id);
}

function checkRole(value: unknown, field: string): Role {
  if (value === "ADMIN" || value === "OPERATOR" || value === "VIEWER") return value;
  throw new InputError(field, "must be ADMIN, OPERATOR or VIEWER");
}

function usernameTaken(existing: string): CairnError {
  return new CairnError(ErrorCode.Conflict, `A user named ${existing} already exists: choose another user name.`, {
    field: "input.username",
  });
}

function lastAdmin(username: string, what: string): CairnError {
  return new CairnError(
    ErrorCode.Conflict,
    `${username} is the last enabled ADMIN and ${what}: make another user ADMIN (or enable one) first, so that someone can still administer Cairn.`,
  );
}
