/**
 * The runs of a METADATA job (BACKUP runs of a job whose mode is METADATA: backup-executor.ts hands them here). For each
 * selected pool (the job's `selection.smart.poolIds`; empty: every connected pool) and each of the job's remotes, the
 * pool's database (`GET /pool/xmldbdump`) is streamed to `metadata/pool/<pool uuid>/<time>/`; with the job's
 * `includeConfiguration` (the default), Cairn's configuration goes to `metadata/cairn/<time>/` on each remote, with its
 * secrets only on an encrypted remote. Each backup's `metadata.json` is written last; then retention keeps the newest
 * `exportRetention` (of the run's schedule) per pool and for the configuration, on that remote. One task per pool and one
 * for the configuration, with a child per remote.
 *
 * Outcome: SUCCESS when every backup was written; FAILURE naming what failed; SKIPPED when there was nothing to back up.
 */
import { Readable, Transform } from "node:stream";
import type { Db } from "../../db/prisma.js";
import { effectiveSettings, type Selection } from "../../domain/job-settings.js";
import { messageOf } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { Remote } from "../../remotes/remote.js";
import type { SecretBox } from "../../security/secret-box.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import type { RunContext, RunExecutor, RunOutcome } from "../run-executor.js";
import type { RemoteRow, StoredRemotes } from "../stored-remotes.js";
import type { TaskContext } from "../task-context.js";
import { exportConfiguration } from "./configuration.js";
import {
  CONFIGURATION_FILE,
  METADATA_FILE,
  type MetadataBackupDescription,
  POOL_DATABASE_FILE,
  cairnBackupFolder,
  describe,
  nextBackupTime,
  poolBackupFolder,
  sha256Hex,
} from "./metadata-layout.js";
import { listMetadataBackups } from "./metadata-index.js";
import { downloadPoolDatabase, poolUuidOf } from "./pool-database.js";

export interface MetadataJobDeps {
  db: Db;
  registry: PoolRegistry;
  remotes: StoredRemotes;
  secrets: SecretBox;
  log: Logger;
}

interface Target {
  row: RemoteRow;
  remote: Remote;
}

interface JobFacts {
  id: string;
  name: string;
  runId: string;
  retention: number;
}

export function createMetadataJobExecutor(deps: MetadataJobDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const { run, root, signal } = context;
    if (!run.jobId) return { status: "FAILURE", error: "This run has no job (it was deleted)." };
    const job = await deps.db.job.findUnique({
      where: { id: run.jobId },
      include: { remotes: { include: { remote: true } }, schedules: true },
    });
    if (!job) return { status: "FAILURE", error: "The job of this run was deleted." };
    const settings = effectiveSettings(job.settings);
    const schedule = job.schedules.find((s) => s.id === run.scheduleId) ?? job.schedules.find((s) => s.enabled) ?? job.schedules[0];
    const facts: JobFacts = { id: job.id, name: job.name, runId: run.id, retention: schedule?.exportRetention ?? 0 };

    const selection = job.selection as unknown as Selection;
    const wanted = selection.smart?.poolIds ?? [];
    const poolRows = await deps.db.pool.findMany({ where: wanted.length > 0 ? { id: { in: wanted } } : {}, orderBy: { name: "asc" } });
    const pools = poolRows.filter((pool) => wanted.length > 0 || deps.registry.get(pool.id)?.status === "CONNECTED");
    for (const id of wanted.filter((id) => !poolRows.some((pool) => pool.id === id)))
      await root.warn(`A pool of the job's selection (${id}) is no longer known to Cairn: left out.`);
    const parts = pools.length + (settings.includeConfiguration ? 1 : 0);
    if (parts === 0) return { status: "SKIPPED", error: "No pool is connected and the configuration is not included: nothing to back up." };

    const targets: Target[] = [];
    for (const { remote: row } of job.remotes) {
      if (!row.enabled) {
        await root.warn(`Remote ${row.name} is disabled: skipped.`);
        continue;
      }
      try {
        const remote = deps.remotes.open(row);
        await remote.open();
        targets.push({ row, remote });
      } catch (error) {
        await root.warn(`Remote ${row.name} could not be opened (${messageOf(error)}): skipped.`);
      }
    }
    if (targets.length === 0) return { status: "FAILURE", error: "None of the job's remotes could be opened: nothing was backed up." };

    let transferred = 0;
    let done = 0;
    const failed: string[] = [];
    const report = () => context.report({ transferredBytes: transferred, progress: done / parts });
    const addBytes = (bytes: number) => {
      transferred += bytes;
      report();
    };
    report();
    try {
      for (const pool of pools) {
        if (signal.aborted) break;
        const ok = await backUpPart(root, "pool", pool.name, targets, async (target, task) => {
          const connection = deps.registry.get(pool.id);
          if (!connection || connection.status !== "CONNECTED") throw new Error(`Pool ${pool.name} is not connected.`);
          const uuid = poolUuidOf(connection);
          if (!uuid) throw new Error(`Pool ${pool.name} shows no pool object: its database cannot be named.`);
          const time = nextBackupTime(`pool:${uuid}:${target.row.id}`);
          const folder = poolBackupFolder(uuid, time);
          const dump = await downloadPoolDatabase(connection);
          const written = await writeData(target.remote, `${folder}/${POOL_DATABASE_FILE}`, dump.body, signal, addBytes);
          await dump.done;
          await finish(deps, target, task, folder, facts, {
            kind: "POOL",
            timestamp: time,
            data: POOL_DATABASE_FILE,
            ...written,
            pool: { uuid, name: pool.name, cairnPoolId: pool.id },
          });
          return written.sizeBytes;
        });
        done++;
        report();
        if (!ok) failed.push(`pool ${pool.name}`);
      }
      if (settings.includeConfiguration && !signal.aborted) {
        const ok = await backUpPart(root, "configuration", "Cairn's configuration", targets, async (target, task) => {
          const secretsIncluded = target.row.encryptionKeySealed !== null;
          const configuration = await exportConfiguration(deps.db, deps.secrets, secretsIncluded);
          const time = nextBackupTime(`cairn:${target.row.id}`);
          const folder = cairnBackupFolder(time);
          const text = `${JSON.stringify(configuration, null, 2)}\n`;
          const written = await writeData(
            target.remote,
            `${folder}/${CONFIGURATION_FILE}`,
            Readable.from([Buffer.from(text)]),
            signal,
            addBytes,
          );
          await finish(deps, target, task, folder, facts, {
            kind: "CAIRN",
            timestamp: time,
            data: CONFIGURATION_FILE,
            ...written,
            secretsIncluded,
          });
          if (!secretsIncluded)
            await task.warn(
              `Remote ${target.row.name} is not encrypted: the configuration was written without passwords and keys (restored remotes and pools will need theirs entered again).`,
            );
          return written.sizeBytes;
        });
        done++;
        report();
        if (!ok) failed.push("Cairn's configuration");
      }
    } finally {
      await Promise.all(targets.map((t) => t.remote.close().catch(() => undefined)));
    }
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
    if (failed.length > 0)
      return { status: "FAILURE", error: `${failed.length} of ${parts} metadata backups failed: ${failed.join(", ")}.` };
    return { status: "SUCCESS" };
  };
}

/** One pool (or the configuration) to every target, a child task per remote. @returns whether every remote got it */
async function backUpPart(
  root: TaskContext,
  kind: string,
  name: string,
  targets: Target[],
  write: (target: Target, task: TaskContext) => Promise<number>,
): Promise<boolean> {
  const task = await root.child(kind, name);
  let bytes = 0;
  const failures: string[] = [];
  for (const target of targets) {
    const child = await task.child("remote", target.row.name);
    try {
      const size = await write(target, child);
      bytes += size;
      await child.succeed({}, size);
    } catch (error) {
      failures.push(`${target.row.name}: ${messageOf(error)}`);
      await child.fail(error);
    }
  }
  if (failures.length === targets.length) await task.fail(new Error(`Not written to any remote (${failures.join("; ")}).`));
  else {
    for (const failure of failures) await task.warn(`Not written to remote ${failure}.`);
    await task.succeed({ remotes: targets.length - failures.length }, bytes);
  }
  return failures.length === 0;
}

async function writeData(
  remote: Remote,
  path: string,
  body: Readable,
  signal: AbortSignal,
  addBytes: (bytes: number) => void,
): Promise<{ sizeBytes: number; sha256: string }> {
  const hash = sha256Hex();
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      addBytes(chunk.length);
      callback(null, chunk);
    },
  });
  body.on("error", (error) => meter.destroy(error));
  await remote.writeStream(path, body.pipe(meter), { signal });
  return { sizeBytes: size, sha256: hash.digest() };
}

/** Writes the backup's `metadata.json` (last: the backup exists from then on), indexes it, and applies retention. */
async function finish(
  deps: MetadataJobDeps,
  target: Target,
  task: TaskContext,
  folder: string,
  job: JobFacts,
  backup: Pick<MetadataBackupDescription, "kind" | "timestamp" | "data" | "sizeBytes" | "sha256" | "pool" | "secretsIncluded">,
): Promise<void> {
  const description: MetadataBackupDescription = {
    format: "cairn-metadata-backup",
    version: 1,
    ...backup,
    jobId: job.id,
    jobName: job.name,
    runId: job.runId,
  };
  await target.remote.writeFile(`${folder}/${METADATA_FILE}`, describe(description));
  await deps.db.metadataBackup.create({
    data: {
      kind: backup.kind,
      poolId: backup.pool?.cairnPoolId ?? null,
      poolUuid: backup.pool?.uuid ?? null,
      poolName: backup.pool?.name ?? null,
      remoteId: target.row.id,
      path: folder,
      timestamp: new Date(backup.timestamp),
      sizeBytes: BigInt(backup.sizeBytes),
      secretsIncluded: backup.secretsIncluded === true,
      jobId: job.id,
      runId: job.runId,
    },
  });
  if (job.retention > 0) {
    const all = await listMetadataBackups(target.remote, { kind: backup.kind });
    const same = all.filter((found) => backup.kind === "CAIRN" || found.description.pool?.uuid === backup.pool?.uuid);
    const removed = same.slice(job.retention);
    for (const old of removed) {
      // The description first: from then on the folder is no backup, whatever happens to the rest of it.
      await target.remote.delete(`${old.path}/${METADATA_FILE}`);
      await target.remote.deleteTree(old.path);
      await deps.db.metadataBackup.deleteMany({ where: { remoteId: target.row.id, path: old.path } });
    }
    if (removed.length > 0)
      await task.note(`retention (${job.retention}): removed ${removed.length} older backup${removed.length === 1 ? "" : "s"}`);
  }
}
