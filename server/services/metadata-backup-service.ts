/**
 * Metadata backups (METADATA jobs, server/engine/metadata/): the list, the index of a remote, and the two restores.
 *
 * - `restorePoolMetadata`: sends a pool's database back to that pool (`PUT /pool/xmldbdump`), once its bytes match the
 *   checksum written with them. XAPI restarts its toolstack on the received database: every session ends, and Cairn's
 *   connection to the pool reconnects by itself.
 * - `restoreConfiguration`: the disaster-recovery drill. Into an EMPTY Cairn (no job and no restore point; the pools and
 *   remotes already there, such as the lab's pools and its `local` remote or ones the admin added to reach the backups,
 *   may stay), from a remote given as createRemote takes it (not registered yet), the newest configuration backup or a
 *   chosen one: users, pools, remotes, jobs and their schedules are created with the ids they had, so that everything
 *   refers to everything as before. A pool, remote or user whose name is already taken here is kept as it is here (the
 *   jobs then use it) and reported. Secrets are in a backup only when it was written to an encrypted remote; a backup
 *   without them brings remotes back disabled and pools without a password, and the answer names each one to fix.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Db } from "../db/prisma.js";
import type { Principal } from "../domain/principal.js";
import { validUuid } from "../domain/ids.js";
import { CairnError, ErrorCode, InputError, messageOf, notFound } from "../errors.js";
import type { Logger } from "../log.js";
import { createRemote, type RemoteConfig } from "../remotes/create-remote.js";
import { isRemoteError } from "../remotes/remote-error.js";
import type { Remote } from "../remotes/remote.js";
import type { SecretBox } from "../security/secret-box.js";
import type { StoredRemotes } from "../engine/stored-remotes.js";
import { type Configuration, parseConfiguration } from "../engine/metadata/configuration.js";
import { indexMetadataBackups, listMetadataBackups, readDescription, type FoundMetadataBackup } from "../engine/metadata/metadata-index.js";
import type { MetadataBackupDescription } from "../engine/metadata/metadata-layout.js";
import { poolUuidOf, uploadPoolDatabase } from "../engine/metadata/pool-database.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import type { PoolConnection } from "../xapi/pool-connection.js";
import type { RemoteInput } from "./remote-service.js";
import { poolAddressKey } from "./pool-service.js";

/** How long a pool may take to take its database back. */
const RESTORE_TIMEOUT_MS = 15 * 60_000;

export interface MetadataBackupFilter {
  remoteId?: string | null;
  poolId?: string | null;
  kind?: "POOL" | "CAIRN" | null;
}

/** A remote given as createRemote takes it, for the drill (the remote is not registered in this Cairn yet). */
export type DrillRemoteInput = Omit<RemoteInput, "name" | "enabled"> & { name?: string | null };

export interface ConfigurationBackupView {
  path: string;
  timestamp: Date;
  sizeBytes: number;
  secretsIncluded: boolean;
  jobName: string | null;
}

export interface ConfigurationRestoreResult {
  backup: ConfigurationBackupView;
  users: string[];
  pools: string[];
  remotes: string[];
  jobs: string[];
  schedules: number;
  /** Objects of the backup whose name was already taken here: this Cairn's own were kept. */
  kept: string[];
  /** Sentences naming each restored object that needs a secret entered again. */
  needsSecrets: string[];
  message: string;
}

export class MetadataBackupService {
  constructor(private readonly deps: { db: Db; registry: PoolRegistry; remotes: StoredRemotes; secrets: SecretBox; log: Logger }) {}

  list(filter: MetadataBackupFilter = {}) {
    return this.deps.db.metadataBackup.findMany({
      where: {
        ...(filter.remoteId ? { remoteId: validUuid(filter.remoteId, "remote") } : {}),
        ...(filter.poolId ? { poolId: validUuid(filter.poolId, "pool") } : {}),
        ...(filter.kind ? { kind: filter.kind } : {}),
      },
      include: { remote: { select: { id: true, name: true } } },
      orderBy: [{ timestamp: "desc" }, { id: "asc" }],
      take: 1000,
    });
  }

  /** Re-reads the metadata backups a stored remote holds into the index. @returns how many it holds */
  async scan(remoteId: string): Promise<number> {
    const row = await this.deps.remotes.get(remoteId);
    const remote = this.deps.remotes.open(row);
    try {
      await remote.open();
      return await indexMetadataBackups(this.deps.db, row.id, remote, (uuid) => this.connectionOfUuid(uuid)?.poolId);
    } catch (error) {
      if (error instanceof CairnError) throw error;
      throw new CairnError(
        ErrorCode.Unavailable,
        `The metadata backups on remote ${row.name} could not be read: ${messageOf(error)}`,
        {},
        { cause: error },
      );
    } finally {
      await remote.close().catch(() => undefined);
    }
  }

  /**
   * Sends a pool metadata backup back to its pool (the pool with the backup's uuid, connected to this Cairn).
   * @throws NOT_FOUND (backup), BAD_USER_INPUT (a configuration backup), CONFLICT (the pool is not connected), INTEGRITY
   *   (the backup's bytes do not match their checksum: nothing is sent), UNAVAILABLE (the remote or the pool failed)
   */
  async restorePoolMetadata(id: string, _principal: Principal | undefined): Promise<{ poolName: string; message: string }> {
    const backup = await this.deps.db.metadataBackup.findUnique({
      where: { id: validUuid(id, "metadata backup") },
      include: { remote: true },
    });
    if (!backup) throw notFound("metadata backup", id);
    const label = `the metadata backup of ${backup.timestamp.toISOString()}`;
    if (backup.kind !== "POOL" || !backup.poolUuid)
      throw new InputError(
        "id",
        `${label} is Cairn's configuration, not a pool's: restore it with restoreConfiguration, into an empty Cairn`,
      );
    const poolName = backup.poolName ?? backup.poolUuid;
    const connection = this.connectionOfUuid(backup.poolUuid) ?? (backup.poolId ? this.deps.registry.get(backup.poolId) : undefined);
    if (!connection || connection.status !== "CONNECTED" || poolUuidOf(connection) !== backup.poolUuid)
      throw new CairnError(
        ErrorCode.Conflict,
        `Pool ${poolName} (uuid ${backup.poolUuid}) is not connected to this Cairn: connect it (or wait for it to reconnect), then restore its metadata again.`,
      );
    const remote = this.deps.remotes.open(backup.remote);
    try {
      await remote.open();
      const description = await readDescription(remote, backup.path);
      if (!description)
        throw new CairnError(
          ErrorCode.NotFound,
          `Remote ${backup.remote.name} no longer holds ${label} of pool ${poolName} (${backup.path}): scan the remote's metadata backups again.`,
        );
      const dataPath = `${backup.path}/${description.data}`;
      // Read whole and checked first: a damaged dump is never sent. Its length known, the upload ends with its last byte
      // (rather than with the half-close of XAPI's unknown-length convention, after which a host may drop its answer).
      const bytes = await checkData(remote, dataPath, description, `${label} of pool ${poolName} on remote ${backup.remote.name}`);
      const body = Object.assign(Readable.from([bytes]), { length: bytes.length });
      await uploadPoolDatabase(connection, body, AbortSignal.timeout(RESTORE_TIMEOUT_MS));
    } catch (error) {
      if (error instanceof CairnError) throw error;
      throw new CairnError(
        ErrorCode.Unavailable,
        `The metadata of pool ${poolName} could not be restored: ${messageOf(error)}`,
        {},
        { cause: error },
      );
    } finally {
      await remote.close().catch(() => undefined);
    }
    this.deps.log.warn({ poolId: connection.poolId, backup: backup.path }, "pool metadata restored: the pool's toolstack restarts");
    return {
      poolName: connection.displayName,
      message: `Pool ${connection.displayName} took back its metadata of ${backup.timestamp.toISOString()}. Its toolstack restarts on it: every session ends and Cairn's connection reconnects by itself within a minute or two.`,
    };
  }

  /** The configuration backups on a remote that is not registered here (the drill's first step), newest first. */
  async configurationBackups(input: DrillRemoteInput): Promise<ConfigurationBackupView[]> {
    return this.withDrillRemote(input, async (remote) => (await listMetadataBackups(remote, { kind: "CAIRN" })).map(viewOf));
  }

  /**
   * The drill: restores a configuration backup into this Cairn, which must be empty (no job, no restore point).
   * @throws CONFLICT (not empty: names what is there), BAD_USER_INPUT (the remote input, a wrong key), NOT_FOUND (no such
   *   backup), INTEGRITY (the backup's bytes do not match their checksum)
   */
  async restoreConfiguration(
    input: { remote: DrillRemoteInput; path?: string | null },
    _principal: Principal | undefined,
  ): Promise<ConfigurationRestoreResult> {
    await this.assertEmpty();
    const { found, configuration } = await this.withDrillRemote(input.remote, async (remote, where) => {
      const backups = await listMetadataBackups(remote, { kind: "CAIRN" });
      const chosen = input.path ? backups.find((backup) => backup.path === input.path) : backups[0];
      if (!chosen)
        throw new CairnError(
          ErrorCode.NotFound,
          input.path
            ? `${where} holds no configuration backup at ${input.path}: pick one of those configurationBackups lists.`
            : `${where} holds no configuration backup (nothing under metadata/cairn/): check the location, or run a METADATA job with "include Cairn's configuration" first.`,
        );
      const dataPath = `${chosen.path}/${chosen.description.data}`;
      const bytes = await checkData(remote, dataPath, chosen.description, `the configuration backup ${chosen.path} on ${where}`);
      try {
        return { found: chosen, configuration: parseConfiguration(bytes.toString("utf8")) };
      } catch (error) {
        throw new CairnError(
          ErrorCode.Integrity,
          `The configuration backup ${chosen.path} on ${where} cannot be read: ${messageOf(error)}.`,
        );
      }
    });
    // Checked again now that the backup is read: another admin may have created a job meanwhile.
    await this.assertEmpty();
    const result = await this.apply(configuration);
    for (const poolId of result.createdPoolIds) this.connectInBackground(poolId);
    await this.indexRestoredRemotes(result.createdRemoteIds);
    const restored = `${count(result.users.length, "user")}, ${count(result.pools.length, "pool")}, ${count(result.remotes.length, "remote")}, ${count(result.jobs.length, "job")} with ${count(result.schedules, "schedule")}`;
    const secrets =
      result.needsSecrets.length > 0
        ? ` ${result.needsSecrets.length} object${result.needsSecrets.length === 1 ? " needs its" : "s need their"} secret entered again (see needsSecrets).`
        : "";
    return {
      backup: viewOf(found),
      users: result.users,
      pools: result.pools,
      remotes: result.remotes,
      jobs: result.jobs,
      schedules: result.schedules,
      kept: result.kept,
      needsSecrets: result.needsSecrets,
      message: `Restored the configuration of ${new Date(found.description.timestamp).toISOString()}: ${restored}.${secrets}`,
    };
  }

  /** Refuses a Cairn that is not empty, naming what is there. */
  private async assertEmpty(): Promise<void> {
    const db = this.deps.db;
    const [jobs, points] = await Promise.all([
      db.job.findMany({ select: { name: true }, orderBy: { name: "asc" }, take: 5 }),
      db.restorePoint.count(),
    ]);
    if (jobs.length === 0 && points === 0) return;
    const jobCount = jobs.length === 0 ? 0 : await db.job.count();
    const what = [
      jobCount > 0 ? `${count(jobCount, "job")} (${jobs.map((j) => j.name).join(", ")}${jobCount > jobs.length ? ", …" : ""})` : "",
      points > 0 ? count(points, "restore point") : "",
    ]
      .filter(Boolean)
      .join(" and ");
    throw new CairnError(
      ErrorCode.Conflict,
      `This Cairn is not empty: it has ${what}. A configuration is restored only into an empty Cairn (no job, no restore point), so that nothing here is overwritten: restore it into a freshly installed Cairn, or remove these first.`,
      { reason: "NOT_EMPTY" },
    );
  }

  /** Opens the drill's remote, runs `work`, closes it; remote errors become sentences naming the remote. */
  private async withDrillRemote<T>(input: DrillRemoteInput, work: (remote: Remote, where: string) => Promise<T>): Promise<T> {
    if (!input || typeof input !== "object") throw new InputError("remote", "is required");
    const config: RemoteConfig = {
      kind: input.kind,
      location: typeof input.location === "string" ? input.location.trim() : input.location,
      options: input.options ?? {},
      username: input.username ?? undefined,
      password: input.password ?? undefined,
      encryptionKey: input.encryptionKey ? input.encryptionKey : undefined,
    };
    const where = `the ${input.kind} remote at ${config.location}`;
    let remote: Remote;
    try {
      remote = createRemote(config);
    } catch (error) {
      throw new InputError("remote", messageOf(error));
    }
    try {
      await remote.open();
      return await work(remote, where);
    } catch (error) {
      if (error instanceof CairnError) throw error;
      if (isRemoteError(error, "WRONG_KEY"))
        throw new CairnError(
          ErrorCode.InvalidConfig,
          `The key for ${where} is wrong: give the key or passphrase it was encrypted with.`,
          { reason: "WRONG_KEY", field: "remote.encryptionKey" },
          { cause: error },
        );
      if (isRemoteError(error) && (error.code === "INVALID_CONFIG" || error.code === "INVALID_PATH"))
        throw new InputError("remote", messageOf(error));
      throw new CairnError(ErrorCode.Unavailable, `${where} could not be read: ${messageOf(error)}`, {}, { cause: error });
    } finally {
      await remote.close().catch(() => undefined);
    }
  }

  private async apply(configuration: Configuration) {
    const { db, secrets } = this.deps;
    const withSecrets = configuration.secretsIncluded;
    const kept: string[] = [];
    const needsSecrets: string[] = [];
    const createdPoolIds: string[] = [];
    const createdRemoteIds: string[] = [];
    const names = { users: [] as string[], pools: [] as string[], remotes: [] as string[], jobs: [] as string[] };
    let schedules = 0;
    await db.$transaction(
      async (tx) => {
        const users = await tx.user.findMany({ select: { username: true } });
        for (const user of configuration.users) {
          if (users.some((u) => u.username === user.username)) {
            kept.push(`User ${user.username} already exists here: kept as it is (its password and role here are unchanged).`);
            continue;
          }
          await tx.user.create({
            data: {
              id: user.id,
              username: user.username,
              passwordHash: user.passwordHash,
              role: user.role as "ADMIN" | "OPERATOR" | "VIEWER",
              disabledAt: user.disabled ? new Date() : null,
            },
          });
          names.users.push(user.username);
        }

        const poolIds = new Map<string, string>();
        const pools = await tx.pool.findMany({ select: { id: true, name: true, url: true } });
        for (const pool of configuration.pools) {
          const same = pools.find((p) => p.name === pool.name) ?? pools.find((p) => poolAddressKey(p.url) === poolAddressKey(pool.url));
          if (same) {
            poolIds.set(pool.id, same.id);
            kept.push(
              `Pool ${pool.name} is already connected here${same.name === pool.name ? "" : ` as ${same.name}`}: kept, and the restored jobs use it.`,
            );
            continue;
          }
          await tx.pool.create({
            data: {
              id: pool.id,
              name: pool.name,
              url: pool.url,
              username: pool.username,
              passwordSealed: secrets.seal(withSecrets && pool.password !== undefined ? pool.password : ""),
              allowUnauthorized: pool.allowUnauthorized,
              tlsFingerprint: pool.tlsFingerprint,
              status: withSecrets ? "CONNECTING" : "ERROR",
              lastError: withSecrets ? null : "Its password was not in the configuration backup: enter it again.",
            },
          });
          poolIds.set(pool.id, pool.id);
          names.pools.push(pool.name);
          if (withSecrets && pool.password !== undefined) createdPoolIds.push(pool.id);
          else needsSecrets.push(`Pool ${pool.name}: enter its password again (edit the pool), then it connects.`);
        }

        const remoteIds = new Map<string, string>();
        const remotes = await tx.remote.findMany({ select: { id: true, name: true } });
        for (const remote of configuration.remotes) {
          const same = remotes.find((r) => r.name === remote.name);
          if (same) {
            remoteIds.set(remote.id, same.id);
            kept.push(`Remote ${remote.name} already exists here: kept as it is, and the restored jobs use it.`);
            continue;
          }
          const missing = [
            remote.hasPassword && remote.password === undefined ? "password" : "",
            remote.encrypted && remote.encryptionKey === undefined ? "encryption key" : "",
          ].filter(Boolean);
          await tx.remote.create({
            data: {
              id: remote.id,
              name: remote.name,
              kind: remote.kind as "LOCAL" | "SMB" | "NFS" | "S3",
              location: remote.location,
              options: (remote.options ?? {}) as object,
              username: remote.username,
              passwordSealed: remote.password !== undefined ? secrets.seal(remote.password) : null,
              encryptionKeySealed: remote.encryptionKey !== undefined ? secrets.seal(remote.encryptionKey) : null,
              // Without its key an encrypted remote would be written in the clear: it stays off until the key is back.
              enabled: remote.enabled && missing.length === 0,
            },
          });
          remoteIds.set(remote.id, remote.id);
          names.remotes.push(remote.name);
          if (missing.length > 0)
            needsSecrets.push(`Remote ${remote.name}: enter its ${missing.join(" and ")} again (edit the remote), then enable it.`);
          else createdRemoteIds.push(remote.id);
        }

        for (const job of configuration.jobs) {
          const selection = remapSelection(job.selection, poolIds);
          const extra = Object.fromEntries(
            Object.entries(job.extra ?? {}).map(([key, value]) => [
              key,
              typeof value === "string" ? (remoteIds.get(value) ?? poolIds.get(value) ?? value) : value,
            ]),
          );
          await tx.job.create({
            data: {
              ...extra,
              id: job.id,
              name: job.name,
              mode: job.mode as "FULL",
              selection: selection as object,
              srUuids: job.srUuids,
              settings: job.settings as object,
              enabled: job.enabled,
              remotes: { create: job.remoteIds.flatMap((id) => (remoteIds.has(id) ? [{ remoteId: remoteIds.get(id)! }] : [])) },
              schedules: {
                create: job.schedules.map((s) => ({ ...s, weekStart: s.weekStart as "MONDAY" | "SUNDAY" })),
              },
            },
          });
          names.jobs.push(job.name);
          schedules += job.schedules.length;
          if (job.hadWebhook && typeof job.settings.reportWebhookUrl !== "string")
            needsSecrets.push(`Job ${job.name}: its report webhook URL was not in the backup: enter it again (edit the job).`);
        }
      },
      { timeout: 60_000 },
    );
    return { ...names, schedules, kept, needsSecrets, createdPoolIds, createdRemoteIds };
  }

  private connectInBackground(poolId: string): void {
    void (async () => {
      const row = await this.deps.db.pool.findUnique({ where: { id: poolId } });
      if (!row) return;
      await this.deps.registry.connectNow(row.id, this.deps.registry.credentialsOf(row));
    })().catch((error: unknown) =>
      this.deps.log.warn({ poolId, err: error }, "a restored pool could not connect now: it is tried again at the next start"),
    );
  }

  /** The restored remotes' metadata backups, listed at once (the drill's remote among them). */
  private async indexRestoredRemotes(remoteIds: string[]): Promise<void> {
    for (const id of remoteIds) {
      await this.scan(id).catch((error: unknown) =>
        this.deps.log.warn({ remoteId: id, err: error }, "the metadata backups of a restored remote could not be indexed"),
      );
    }
  }

  private connectionOfUuid(uuid: string): PoolConnection | undefined {
    return this.deps.registry.all().find((connection) => poolUuidOf(connection) === uuid);
  }
}

/** Reads a backup's data file and checks it against the checksum written with it. @returns its bytes */
async function checkData(remote: Remote, path: string, description: MetadataBackupDescription, what: string): Promise<Buffer> {
  const bytes = await remote.readFile(path);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (bytes.length !== description.sizeBytes || sha256 !== description.sha256)
    throw new CairnError(
      ErrorCode.Integrity,
      `${what} is damaged: ${path} does not match the checksum written with it (${bytes.length} bytes, ${description.sizeBytes} expected). Nothing was restored: pick another backup.`,
      { file: path },
    );
  return bytes;
}

function remapSelection(selection: unknown, poolIds: Map<string, string>): unknown {
  const value = selection as { smart?: { poolIds?: string[] } | null } | null;
  if (!value?.smart?.poolIds) return selection;
  return { ...value, smart: { ...value.smart, poolIds: value.smart.poolIds.map((id) => poolIds.get(id) ?? id) } };
}

function viewOf(found: FoundMetadataBackup): ConfigurationBackupView {
  return {
    path: found.path,
    timestamp: new Date(found.description.timestamp),
    sizeBytes: found.description.sizeBytes,
    secretsIncluded: found.description.secretsIncluded === true,
    jobName: found.description.jobName,
  };
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}
