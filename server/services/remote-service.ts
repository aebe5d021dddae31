/** Remotes: where backups are stored. CRUD with validation, the write/read test, and space figures. */
import type { Db } from "../db/prisma.js";
import type { RemoteKind } from "../db/generated/enums.js";
import { CairnError, ErrorCode, InputError, messageOf } from "../errors.js";
import { indexRemote } from "../engine/backup/remote-backup-index.js";
import { createStoredRemotes, type RemoteRow, type StoredRemotes } from "../engine/stored-remotes.js";
import type { ConfigurationCache } from "./configuration-cache.js";
import type { Logger } from "../log.js";
import { createRemote, realLocalLocation, type RemoteConfig } from "../remotes/create-remote.js";
import { encryptionSecretProblem, KEY_CHECK_FILE } from "../remotes/encrypted/format.js";
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
  /**
   * Write-only: encrypts the remote at rest with this passphrase (12 characters or more) or 32-byte key (64 hex digits or
   * base64). On update, absent keeps the stored key, "" makes the remote plain; a change is refused while it holds backups.
   */
  encryptionKey?: string | null;
  /** Days every backup's files stay immutable once complete (LOCAL as root, S3 with Object Lock); 0: off. On update, absent keeps it. */
  immutabilityDays?: number | null;
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
    /** Where the remotes list is kept between changes; none: every call reads the database. */
    private readonly cache?: ConfigurationCache,
  ) {
    this.stored = createStoredRemotes(db, secrets);
  }

  /** Every remote, by name, as of `asOf` (see ConfigurationCache.read). Frozen: do not change it. */
  list(asOf?: number) {
    const load = () => this.db.remote.findMany({ orderBy: { name: "asc" } });
    return this.cache ? this.cache.read("remotes", load, asOf) : load();
  }

  get(id: string): Promise<RemoteRow> {
    return this.stored.get(id);
  }

  async create(input: RemoteInput) {
    const name = requiredText(input?.name, "input.name", 100);
    const encryptionKey = newEncryptionKey(input?.encryptionKey);
    const config = await this.check(input, input.password ?? undefined, encryptionKey, input.immutabilityDays ?? 0);
    await this.assertNameFree(name);
    await this.probe(config, name);
    return this.db.remote.create({ data: { name, enabled: input.enabled ?? true, ...this.columns(config) } });
  }

  async update(id: string, input: RemoteInput) {
    const existing = await this.get(id);
    const name = requiredText(input?.name, "input.name", 100);
    const password = input.password ?? (existing.passwordSealed ? this.secrets.open(existing.passwordSealed) : undefined);
    const storedKey = existing.encryptionKeySealed ? this.secrets.open(existing.encryptionKeySealed) : undefined;
    const encryptionKey =
      input.encryptionKey === undefined || input.encryptionKey === null ? storedKey : newEncryptionKey(input.encryptionKey);
    const config = await this.check(input, password, encryptionKey, input.immutabilityDays ?? existing.immutabilityDays);
    if (name !== existing.name) await this.assertNameFree(name);
    if (encryptionKey !== storedKey) await this.prepareKeyChange(existing, config);
    await this.probe(config, name);
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
    const mirrors = await this.db.job.findMany({ where: { sourceRemoteId: remote.id }, select: { name: true } });
    if (mirrors.length > 0) {
      throw new CairnError(
        ErrorCode.Conflict,
        `Remote ${remote.name} is the source of mirror job(s) ${mirrors.map((j) => j.name).join(", ")}: give them another source or remove them first.`,
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
      await this.openChecked(row.name, remote, row.encryptionKeySealed !== null);
      if (row.immutabilityDays > 0) await this.checkImmutability(row.name, remote);
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
      await this.openChecked(row.name, remote, row.encryptionKeySealed !== null);
      const result = await indexRemote(this.db, row.id, remote);
      return { count: result.indexed, problems: result.problems };
    } catch (error) {
      if (error instanceof CairnError) throw error;
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

  /**
   * Opens a remote and checks that its encryption is the one configured: the key opens the key check file (else "The key
   * for remote ... is wrong"), and a plain remote's folder is not an encrypted one (it would read ciphertext).
   * @param field the input field a refusal is about (createRemote, updateRemote), none for an operation on a stored remote
   * @throws CairnError INVALID_CONFIG (API: BAD_USER_INPUT; details.reason WRONG_KEY or ENCRYPTED), the remote's own errors otherwise
   */
  private async openChecked(name: string, remote: Remote, encrypted: boolean, field?: string): Promise<void> {
    const about = field === undefined ? {} : { field };
    try {
      await remote.open();
    } catch (error) {
      if (isRemoteError(error, "WRONG_KEY")) {
        throw new CairnError(
          ErrorCode.InvalidConfig,
          `The key for remote ${name} is wrong: ${error.detail}. Give the key or passphrase it was encrypted with.`,
          { reason: "WRONG_KEY", ...about },
          { cause: error },
        );
      }
      throw error;
    }
    if (!encrypted && (await holdsKeyCheck(remote))) {
      throw new CairnError(
        ErrorCode.InvalidConfig,
        `Remote ${name} is encrypted (its root holds ${KEY_CHECK_FILE}), and no encryption key is set: give the key or passphrase it was encrypted with.`,
        { reason: "ENCRYPTED", ...about },
      );
    }
  }

  /**
   * Before a remote's encryption changes (another key, on or off): refused while it holds backups, which the new key
   * could not read; on a remote holding nothing but its key check file, that file is removed so the new key makes its own.
   */
  private async prepareKeyChange(existing: RemoteRow, config: RemoteConfig): Promise<void> {
    const points = await this.db.restorePoint.count({ where: { remoteId: existing.id } });
    const conflict = (what: string) =>
      new CairnError(
        ErrorCode.Conflict,
        `Remote ${existing.name} holds ${what} encrypted with its current key: its encryption cannot change while it holds backups. Keep the key, or create another remote (an empty folder or bucket) with the new one.`,
        { field: "input.encryptionKey" },
      );
    if (points > 0) throw conflict(`${points} restore point(s)`);
    if (existing.encryptionKeySealed === null) return; // plain to encrypted: the probe refuses a remote that is not empty
    // The storage itself, without the encryption layer: what is there, in the clear.
    const storage = createRemote({ ...config, encryptionKey: undefined });
    try {
      await storage.open();
      const present = (await storage.list("")).filter((entry) => !storage.isTemporaryName(entry));
      if (present.some((entry) => entry !== KEY_CHECK_FILE))
        throw conflict(
          `files (${present
            .filter((e) => e !== KEY_CHECK_FILE)
            .slice(0, 3)
            .join(", ")})`,
        );
      await storage.delete(KEY_CHECK_FILE);
    } catch (error) {
      if (error instanceof CairnError) throw error;
      throw new CairnError(ErrorCode.Unavailable, messageOf(error), {}, { cause: error });
    } finally {
      await this.close(storage, "key change");
    }
  }

  /** The checked configuration; a LOCAL location becomes the real folder it names (see realLocalLocation). */
  private async check(
    input: RemoteInput,
    password: string | undefined,
    encryptionKey: string | undefined,
    immutabilityDays: number,
  ): Promise<RemoteConfig> {
    const config: RemoteConfig = {
      kind: input.kind,
      location: typeof input.location === "string" ? input.location.trim() : input.location,
      options: input.options ?? {},
      username: input.username ?? undefined,
      password,
      encryptionKey,
      immutabilityDays,
    };
    try {
      createRemote(config);
      if (config.kind === "LOCAL") config.location = await realLocalLocation(config.location);
    } catch (error) {
      throw asInputError(error);
    }
    return config;
  }

  /**
   * Opens the storage once so a wrong location, credential or encryption key is reported now, not at the first backup.
   * An encrypted remote's first open writes its key check file (see server/repository/FORMAT.md, "Encryption").
   */
  private async probe(config: RemoteConfig, name: string): Promise<void> {
    const remote = createRemote(config);
    try {
      await this.openChecked(name, remote, config.encryptionKey !== undefined, "input.encryptionKey");
      if ((config.immutabilityDays ?? 0) > 0) await this.checkImmutability(name, remote, "input.immutabilityDays");
    } catch (error) {
      if (error instanceof CairnError) throw error;
      if (isRemoteError(error) && (error.code === "INVALID_CONFIG" || error.code === "INVALID_PATH")) throw asInputError(error);
      throw new CairnError(ErrorCode.Unavailable, messageOf(error), {}, { cause: error });
    } finally {
      await this.close(remote, "probe");
    }
  }

  /**
   * Proves that the remote can make files immutable (LOCAL: root and a file system keeping the attribute, by protecting
   * and releasing a probe file; S3: Object Lock on the bucket). NFS and SMB never get here: createRemote refuses them.
   * @throws InputError on `field` (create, update), CairnError INVALID_CONFIG otherwise (test), saying why and what to do
   */
  private async checkImmutability(name: string, remote: Remote, field?: string): Promise<void> {
    try {
      if (remote.checkImmutability === undefined) throw new Error(`a ${remote.kind} remote cannot make files immutable`);
      await remote.checkImmutability();
    } catch (error) {
      const why = isRemoteError(error) ? error.detail : messageOf(error);
      const sentence = `Remote ${name} cannot keep backups immutable: ${why}.`;
      if (field !== undefined) throw new InputError(field, sentence);
      throw new CairnError(ErrorCode.InvalidConfig, sentence, { reason: "IMMUTABILITY" }, { cause: error });
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
      encryptionKeySealed: config.encryptionKey ? this.secrets.seal(config.encryptionKey) : null,
      immutabilityDays: config.immutabilityDays ?? 0,
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

/** An encryption key given in the input: undefined for none (absent or ""), else one fit for a new remote. */
function newEncryptionKey(value: unknown): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new InputError("input.encryptionKey", "must be a string");
  const problem = encryptionSecretProblem(value);
  if (problem !== undefined) throw new InputError("input.encryptionKey", problem);
  return value;
}

/** Whether a remote opened plain holds an encrypted remote's key check file at its root. */
async function holdsKeyCheck(remote: Remote): Promise<boolean> {
  try {
    await remote.stat(KEY_CHECK_FILE);
    return true;
  } catch (error) {
    if (isRemoteError(error, "NOT_FOUND")) return false;
    throw error;
  }
}

/** A refused remote configuration as the API's input error, on the field the remotes module names (`RemoteError.field`). */
function asInputError(error: unknown): unknown {
  if (!isRemoteError(error)) return error;
  return new InputError(error.field === undefined ? "input" : `input.${error.field}`, error.message.replace(/^INVALID_CONFIG: /, ""));
}
