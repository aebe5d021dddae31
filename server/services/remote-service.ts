/** Remotes: where backups are stored. CRUD with validation, the write/read test, and space figures. */
import type { Db } from "../db/prisma.js";
import type { RemoteKind } from "../db/generated/enums.js";
import { CairnError, ErrorCode, InputError, messageOf } from "../errors.js";
import { indexRemote } from "../engine/backup/remote-backup-index.js";
import { createStoredRemotes, type RemoteRow, type StoredRemotes } from "../engine/stored-remotes.js";
import type { Logger } from "../log.js";
import { createRemote, realLocalLocation, type RemoteConfig } from "../remotes/create-remote.js";
import { measureRemote } from "../remotes/measure-remote.js";
import { isRemoteError } from "../remotes/remote-error.js";
import type { Remote } from "../remotes/remote.js";
import type { SecretBox } from "../security/secret-box.js";
import { requiredText } from "./input-checks.js";

export interface RemoteInput {
  name: string;
  kind: RemoteKind;
  location: string;
  options?: Record<string, unknown> | null;
  username?: string | null;
  /** Write-only; on update, absent keeps the stored secret. */
  password?: string | null;
  enabled?: boolean | null;
}

export interface RemoteTestResult {
  ok: boolean;
  writeBytesPerSecond: number;
  readBytesPerSecond: number;
  error: string | null;
  testedAt: string;
}

export class RemoteService implements StoredRemotes {
  private readonly stored: StoredRemotes;

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly log?: Logger,
  ) {
    this.stored = createStoredRemotes(db, secrets);
  }

  list() {
    return this.db.remote.findMany({ orderBy: { name: "asc" } });
  }

  get(id: string): Promise<RemoteRow> {
    return this.stored.get(id);
  }

  async create(input: RemoteInput) {
    const name = requiredText(input?.name, "input.name", 100);
    const config = await this.check(input, input.password ?? undefined);
    await this.assertNameFree(name);
    await this.probe(config);
    return this.db.remote.create({ data: { name, enabled: input.enabled ?? true, ...this.columns(config) } });
  }

  async update(id: string, input: RemoteInput) {
    const existing = await this.get(id);
    const name = requiredText(input?.name, "input.name", 100);
    const password = input.password ?? (existing.passwordSealed ? this.secrets.open(existing.passwordSealed) : undefined);
    const config = await this.check(input, password);
    if (name !== existing.name) await this.assertNameFree(name);
    await this.probe(config);
    return this.db.remote.update({
      where: { id: existing.id },
      data: { name, enabled: input.enabled ?? existing.enabled, ...this.columns(config) },
    });
  }

  async remove(id: string): Promise<boolean> {
    const remote = await this.get(id);
    const jobs = await this.db.jobRemote.findMany({ where: { remoteId: remote.id }, include: { job: true } });
    if (jobs.length > 0) {
      throw new CairnError(
        ErrorCode.Conflict,
        `Remote ${remote.name} is a target of job(s) ${jobs.map((j) => j.job.name).join(", ")}: remove it from them first.`,
      );
    }
    // Restore points of this remote are only an index of what it holds: the backups themselves stay on the remote.
    await this.db.remote.delete({ where: { id: remote.id } });
    return true;
  }

  /** Writes, reads back, verifies and deletes a test file; records the speeds and space figures on the remote. */
  async test(id: string): Promise<RemoteTestResult> {
    const row = await this.get(id);
    const remote = this.open(row);
    let result: RemoteTestResult;
    let space: { freeBytes?: number; usedBytes?: number } = {};
    try {
      await remote.open();
      const measured = await measureRemote(remote);
      space = measured.space;
      result = {
        ok: measured.ok,
        writeBytesPerSecond: measured.writeBytesPerSecond,
        readBytesPerSecond: measured.readBytesPerSecond,
        error: measured.error?.message ?? null,
        testedAt: measured.testedAt.toISOString(),
      };
    } catch (error) {
      result = { ok: false, writeBytesPerSecond: 0, readBytesPerSecond: 0, error: messageOf(error), testedAt: new Date().toISOString() };
    } finally {
      await this.close(remote, "test");
    }
    await this.db.remote.update({
      where: { id: row.id },
      data: {
        lastTest: result as object,
        ...(space.freeBytes !== undefined ? { freeBytes: BigInt(space.freeBytes) } : {}),
        ...(space.usedBytes !== undefined ? { usedBytes: BigInt(space.usedBytes) } : {}),
      },
    });
    return result;
  }

  /**
   * Re-indexes the restore points the remote holds (the remote is the source of truth: a lost database loses none of them).
   * Returns how many are indexed; problems (incomplete backups, broken chains) are returned too.
   */
  async scan(id: string): Promise<{ count: number; problems: string[] }> {
    const row = await this.get(id);
    const remote = this.open(row);
    try {
      await remote.open();
      const result = await indexRemote(this.db, row.id, remote);
      return { count: result.indexed, problems: result.problems };
    } catch (error) {
      if (isRemoteError(error))
        throw new CairnError(ErrorCode.Unavailable, `Remote ${row.name} could not be scanned: ${error.message}`, {}, { cause: error });
      throw error;
    } finally {
      await this.close(remote, "scan");
    }
  }

  /** A handle on the storage of a stored remote (not opened). */
  open(row: RemoteRow): Remote {
    return this.stored.open(row);
  }

  /** The checked configuration; a LOCAL location becomes the real folder it names (see realLocalLocation). */
  private async check(input: RemoteInput, password: string | undefined): Promise<RemoteConfig> {
    const config: RemoteConfig = {
      kind: input.kind,
      location: typeof input.location === "string" ? input.location.trim() : input.location,
      options: input.options ?? {},
      username: input.username ?? undefined,
      password,
    };
    try {
      createRemote(config);
      if (config.kind === "LOCAL") config.location = await realLocalLocation(config.location);
    } catch (error) {
      throw asInputError(error);
    }
    return config;
  }

  /** Opens the storage once so a wrong location or credential is reported now, not at the first backup. */
  private async probe(config: RemoteConfig): Promise<void> {
    const remote = createRemote(config);
    try {
      await remote.open();
    } catch (error) {
      if (isRemoteError(error) && (error.code === "INVALID_CONFIG" || error.code === "INVALID_PATH")) throw asInputError(error);
      throw new CairnError(ErrorCode.Unavailable, messageOf(error), {}, { cause: error });
    } finally {
      await this.close(remote, "probe");
    }
  }

  /**
   * Closes a remote after an operation whose answer is already decided (a failure of it is already in that answer): a
   * close that fails changes nothing for the caller, so it is logged, not thrown.
   */
  private async close(remote: Remote, operation: string): Promise<void> {
    try {
      await remote.close();
    } catch (error) {
      this.log?.warn({ err: error, remote: remote.name, operation }, "could not close a remote after using it");
    }
  }

  private columns(config: RemoteConfig) {
    return {
      kind: config.kind,
      location: config.location,
      options: (config.options ?? {}) as object,
      username: config.username ?? null,
      passwordSealed: config.password ? this.secrets.seal(config.password) : null,
    };
  }

  private async assertNameFree(name: string): Promise<void> {
    if (await this.db.remote.findUnique({ where: { name } })) {
      throw new CairnError(ErrorCode.Conflict, `A remote named ${JSON.stringify(name)} already exists: choose another name.`, {
        field: "input.name",
      });
    }
  }
}

/** A refused remote configuration as the API's input error, on the field the remotes module names (`RemoteError.field`). */
function asInputError(error: unknown): unknown {
  if (!isRemoteError(error)) return error;
  return new InputError(error.field === undefined ? "input" : `input.${error.field}`, error.message.replace(/^INVALID_CONFIG: /, ""));
}
