/**
 * The audit log: one row per mutation (server/graphql/audit-middleware.ts records them), read by ADMINs through `auditLog`, and
 * kept AUDIT_RETENTION_DAYS. What is stored never holds a secret: arguments go through {@link redactArguments} first, and an
 * error's text is kept only when it was written for the client (a CairnError's message).
 */
import type { Db } from "../db/prisma.js";
import type { AuditEntry } from "../db/generated/client.js";
import { systemClock, type Clock } from "../domain/clock.js";
import { startPeriodic } from "../domain/periodic.js";
import { isUuid } from "../domain/ids.js";
import type { TokenKind } from "../domain/principal.js";
import { InputError } from "../errors.js";
import type { Logger } from "../log.js";
import { optionalText } from "./input-checks.js";
import { paginate, type Connection, type PageArgs } from "./pagination.js";

export const REDACTED = "[redacted]";

/** A key naming a secret, at any depth: webhook URLs count, they usually carry their secret in the path or query. */
const SECRET_FIELD = /password|secret|token|key|passphrase|webhook/i;
/** Credentials written into a URL (`smb://user:pass@host/share`): the password part is replaced, the rest kept. */
const URL_CREDENTIALS = /^([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^@/\s]*@/i;
const MAX_STRING = 1000;
/** Deeper than any input of the API: what lies below is not worth keeping (and a hostile document cannot blow the stack). */
const MAX_DEPTH = 8;
const MAX_ITEMS = 100;
const MAX_TEXT = 200;

/** One mutation as the middleware saw it; `at` and `id` are given by the database. */
export interface AuditRecord {
  userId?: string | null;
  username?: string | null;
  tokenId?: string | null;
  tokenKind?: TokenKind | null;
  tokenName?: string | null;
  clientAddress?: string | null;
  transport: "HTTP" | "WS";
  action: string;
  objectType?: string | null;
  objectId?: string | null;
  objectName?: string | null;
  success: boolean;
  errorCode?: string | null;
  message?: string | null;
  /** As the resolver received them: redacted here, before anything is written. */
  arguments?: Record<string, unknown> | null;
}

export interface AuditFilter {
  userId?: string | null;
  username?: string | null;
  action?: string | null;
  objectId?: string | null;
  success?: boolean | null;
  since?: Date | null;
  until?: Date | null;
}

/** The objects whose name the audit log can look up by id (for a mutation whose answer does not carry it, e.g. a removal). */
export type NamedObjectType = "Job" | "Pool" | "Remote" | "RestorePoint" | "ApiToken" | "User";

export interface AuditServiceOptions {
  /** Entries older than this are deleted by the retention sweep. */
  retentionDays: number;
  /** Where "now" is read and the sweep's timer set. @default systemClock */
  clock?: Clock;
  /** Time between two retention sweeps. @default 6 hours */
  sweepIntervalMs?: number;
  /** Rows deleted per statement by the sweep. @default 1000 */
  sweepBatch?: number;
}

const TOKEN_NAME_CACHE = 500;

export class AuditService {
  private readonly clock: Clock;
  /** API token names by id: a token's name never changes, so a mutation costs no lookup after the first of its token. */
  private readonly tokenNames = new Map<string, string | null>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly options: AuditServiceOptions,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /**
   * Writes one entry. Never throws: an audit write that fails must not turn a mutation that happened into an error (the
   * client would retry what was done); it is logged instead, with everything but the arguments.
   */
  async record(record: AuditRecord): Promise<void> {
    const data = {
      userId: record.userId && isUuid(record.userId) ? record.userId : null,
      username: cleanText(record.username),
      tokenId: record.tokenId && isUuid(record.tokenId) ? record.tokenId : null,
      tokenKind: record.tokenKind ?? null,
      tokenName: cleanText(record.tokenName),
      clientAddress: cleanText(record.clientAddress),
      transport: record.transport,
      action: cleanText(record.action) ?? "unknown",
      objectType: cleanText(record.objectType),
      objectId: cleanText(record.objectId),
      objectName: cleanText(record.objectName),
      success: record.success,
      errorCode: cleanText(record.errorCode),
      message: cleanText(record.message, MAX_STRING),
    };
    try {
      const args = record.arguments && Object.keys(record.arguments).length > 0 ? redactArguments(record.arguments) : undefined;
      await this.db.auditEntry.create({ data: { ...data, arguments: args as object | undefined } });
    } catch (error) {
      this.log.error({ err: error, audit: data }, "could not write an audit log entry");
    }
  }

  /** The name of an API token, for the entry of each mutation it makes (sessions are all named alike: not looked up). */
  async tokenName(tokenId: string, kind: TokenKind): Promise<string | null> {
    if (kind !== "API" || !isUuid(tokenId)) return null;
    if (this.tokenNames.has(tokenId)) return this.tokenNames.get(tokenId) ?? null;
    const row = await this.db.apiToken.findUnique({ where: { id: tokenId }, select: { name: true } }).catch(() => null);
    const name = row?.name ?? null;
    if (this.tokenNames.size >= TOKEN_NAME_CACHE) this.tokenNames.delete(this.tokenNames.keys().next().value as string);
    this.tokenNames.set(tokenId, name);
    return name;
  }

  /** The name of an object by id, or null (unknown id, or not found): one primary-key read, never a failure. */
  async objectName(type: NamedObjectType, id: string): Promise<string | null> {
    if (!isUuid(id)) return null;
    const where = { where: { id } };
    try {
      switch (type) {
        case "Job":
          return (await this.db.job.findUnique({ ...where, select: { name: true } }))?.name ?? null;
        case "Pool":
          return (await this.db.pool.findUnique({ ...where, select: { name: true } }))?.name ?? null;
        case "Remote":
          return (await this.db.remote.findUnique({ ...where, select: { name: true } }))?.name ?? null;
        case "RestorePoint":
          return (await this.db.restorePoint.findUnique({ ...where, select: { vmName: true } }))?.vmName ?? null;
        case "ApiToken":
          return (await this.db.apiToken.findUnique({ ...where, select: { name: true } }))?.name ?? null;
        case "User":
          return (await this.db.user.findUnique({ ...where, select: { username: true } }))?.username ?? null;
      }
    } catch (error) {
      this.log.debug({ err: error, type, id }, "audit: could not look up an object's name");
      return null;
    }
  }

  /** Entries matching `filter`, newest first, as a connection (services/pagination.ts). */
  list(filter: AuditFilter = {}, page: PageArgs = {}): Promise<Connection<AuditEntry>> {
    return paginate(this.db.auditEntry, auditWhere(filter), "at", page);
  }

  /**
   * Deletes the entries older than the retention, oldest first, in batches (each a short indexed statement, so that the sweep
   * never holds a long lock nor one huge transaction); returns how many. Several processes sweeping at once is harmless.
   */
  async sweep(now: Date = this.clock.now(), signal?: AbortSignal): Promise<number> {
    const cutoff = new Date(now.getTime() - this.options.retentionDays * 86_400_000);
    const batch = this.options.sweepBatch ?? 1000;
    let deleted = 0;
    while (!signal?.aborted) {
      const rows = await this.db.auditEntry.findMany({
        where: { at: { lt: cutoff } },
        select: { id: true },
        orderBy: { at: "asc" },
        take: batch,
      });
      if (rows.length === 0) break;
      const { count } = await this.db.auditEntry.deleteMany({ where: { id: { in: rows.map((row) => row.id) } } });
      deleted += count;
      if (rows.length < batch) break;
    }
    return deleted;
  }

  /** Sweeps now, then every few hours, until `stop()`, which waits for a sweep under way (cut short between two batches). */
  startRetentionSweep(): { stop(): Promise<void> } {
    return startPeriodic(this.clock, this.options.sweepIntervalMs ?? 6 * 3600_000, (signal) =>
      this.sweep(this.clock.now(), signal)
        .then((deleted) => {
          if (deleted > 0) this.log.info({ deleted, retentionDays: this.options.retentionDays }, "deleted old audit log entries");
        })
        .catch((error: unknown) => this.log.warn({ err: error }, "audit log retention sweep failed; the next one retries")),
    );
  }
}

/** The Prisma `where` of a filter, every field checked: a bad one is an InputError naming it. */
function auditWhere(filter: AuditFilter): object {
  const conditions: object[] = [];
  if (filter.userId !== undefined && filter.userId !== null) {
    if (typeof filter.userId !== "string" || !isUuid(filter.userId)) throw new InputError("filter.userId", "must be a user id (a UUID)");
    conditions.push({ userId: filter.userId.toLowerCase() });
  }
  const username = optionalText(filter.username, "filter.username");
  if (username) conditions.push({ username });
  const action = optionalText(filter.action, "filter.action", 100);
  if (action) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(action))
      throw new InputError("filter.action", "must be the name of a mutation, such as createJob");
    conditions.push({ action });
  }
  const objectId = optionalText(filter.objectId, "filter.objectId");
  if (objectId) conditions.push({ objectId });
  if (filter.success !== undefined && filter.success !== null) conditions.push({ success: filter.success });
  const since = validDate(filter.since, "filter.since");
  const until = validDate(filter.until, "filter.until");
  if (since) conditions.push({ at: { gte: since } });
  if (until) conditions.push({ at: { lt: until } });
  if (since && until && since > until) throw new InputError("filter.until", "must be after filter.since");
  return { AND: conditions };
}

function validDate(value: Date | null | undefined, field: string): Date | undefined {
  if (value === undefined || value === null) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new InputError(field, "must be a date and time (ISO 8601)");
  return value;
}

/**
 * A copy of a mutation's arguments safe to keep: every value under a key that names a secret (at any depth) becomes
 * "[redacted]", passwords written into URLs too, long strings are cut, and what Postgres cannot store (NUL, lone surrogates)
 * is replaced.
 */
export function redactArguments(args: Record<string, unknown>): unknown {
  return redactValue(args, 0);
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === "string") return cleanString(value.replace(URL_CREDENTIALS, `$1:${REDACTED}@`), MAX_STRING);
  if (value === null || typeof value === "number" || typeof value === "boolean") return value;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "bigint") return value.toString();
  if (typeof value !== "object") return null;
  if (depth >= MAX_DEPTH) return "[too deep]";
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((item) => redactValue(item, depth + 1));
    return value.length > MAX_ITEMS ? [...items, `[${value.length - MAX_ITEMS} more]`] : items;
  }
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value).slice(0, MAX_ITEMS)) {
    const safeKey = cleanString(key, MAX_TEXT);
    copy[safeKey] = SECRET_FIELD.test(key)
      ? item === null || item === undefined || item === ""
        ? (item ?? null)
        : REDACTED
      : redactValue(item, depth + 1);
  }
  return copy;
}

/** A surrogate without its pair: JSON.stringify writes it as an escape that Postgres refuses in jsonb. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function cleanString(text: string, max: number): string {
  const cut = text.length > max ? `${text.slice(0, max)}…[${text.length - max} more characters]` : text;
  return cut.replaceAll("\u0000", "\uFFFD").replace(LONE_SURROGATE, "\uFFFD");
}

function cleanText(value: string | null | undefined, max = MAX_TEXT): string | null {
  return typeof value === "string" && value.length > 0 ? cleanString(value, max) : null;
}
