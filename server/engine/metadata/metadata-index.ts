/**
 * The metadata backups a remote holds, read from the remote (the source of truth), and the database's index of them
 * (MetadataBackup rows) brought in step: a Cairn installed afresh, or one pointed at a remote another Cairn filled, lists
 * what is there.
 */
import type { Db } from "../../db/prisma.js";
import type { Remote } from "../../remotes/remote.js";
import {
  CAIRN_METADATA_DIR,
  METADATA_FILE,
  type MetadataBackupDescription,
  POOL_METADATA_DIR,
  folderTime,
  parseDescription,
} from "./metadata-layout.js";

export interface FoundMetadataBackup {
  /** The backup's folder on the remote. */
  path: string;
  description: MetadataBackupDescription;
}

/** Every complete metadata backup on the remote (a folder with a readable `metadata.json`), newest first. */
export async function listMetadataBackups(remote: Remote, options: { kind?: "POOL" | "CAIRN" } = {}): Promise<FoundMetadataBackup[]> {
  const folders: string[] = [];
  if (options.kind !== "POOL") {
    for (const name of await remote.list(CAIRN_METADATA_DIR))
      if (folderTime(name) !== undefined) folders.push(`${CAIRN_METADATA_DIR}/${name}`);
  }
  if (options.kind !== "CAIRN") {
    for (const pool of await remote.list(POOL_METADATA_DIR)) {
      if (pool.startsWith(".") || remote.isTemporaryName(pool)) continue;
      for (const name of await remote.list(`${POOL_METADATA_DIR}/${pool}`)) {
        if (folderTime(name) !== undefined) folders.push(`${POOL_METADATA_DIR}/${pool}/${name}`);
      }
    }
  }
  const found: FoundMetadataBackup[] = [];
  for (const path of folders) {
    const description = await readDescription(remote, path);
    if (description) found.push({ path, description });
  }
  return found.sort((a, b) => b.description.timestamp - a.description.timestamp || a.path.localeCompare(b.path));
}

/** A backup folder's description, or undefined when it has none (an interrupted write) or one that cannot be read. */
export async function readDescription(remote: Remote, folder: string): Promise<MetadataBackupDescription | undefined> {
  let text: string;
  try {
    text = (await remote.readFile(`${folder}/${METADATA_FILE}`)).toString("utf8");
  } catch (error) {
    if ((error as { code?: string }).code === "NOT_FOUND") return undefined;
    throw error;
  }
  return parseDescription(text);
}

/**
 * Brings the remote's MetadataBackup rows in step with what it holds: new backups are added, rows whose backup is gone are
 * removed. Pools are matched to this Cairn's rows by the uuid of their connected pool, or by name.
 * @returns how many backups the remote holds
 */
export async function indexMetadataBackups(
  db: Db,
  remoteId: string,
  remote: Remote,
  poolIdOfUuid: (uuid: string) => string | undefined,
): Promise<number> {
  const found = await listMetadataBackups(remote);
  const poolsByName = new Map((await db.pool.findMany({ select: { id: true, name: true } })).map((p) => [p.name, p.id]));
  const existing = await db.metadataBackup.findMany({ where: { remoteId }, select: { id: true, path: true } });
  const known = new Set(existing.map((row) => row.path));
  const present = new Set(found.map((backup) => backup.path));
  const gone = existing.filter((row) => !present.has(row.path)).map((row) => row.id);
  if (gone.length > 0) await db.metadataBackup.deleteMany({ where: { id: { in: gone } } });
  for (const { path, description } of found) {
    if (known.has(path)) continue;
    const pool = description.pool;
    await db.metadataBackup.create({
      data: {
        kind: description.kind,
        poolUuid: pool?.uuid ?? null,
        poolName: pool?.name ?? null,
        poolId: pool ? (poolIdOfUuid(pool.uuid) ?? poolsByName.get(pool.name) ?? null) : null,
        remoteId,
        path,
        timestamp: new Date(description.timestamp),
        sizeBytes: BigInt(description.sizeBytes),
        secretsIncluded: description.secretsIncluded === true,
        jobId: description.jobId,
        runId: description.runId,
      },
    });
  }
  return found.length;
}
