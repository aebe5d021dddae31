/**
 * Where metadata backups live on a remote, beside the VM backups (server/repository/FORMAT.md, "Metadata backups"):
 *
 *   metadata/pool/<pool uuid>/<YYYYMMDDTHHmmssZ>/pool-database.xml + metadata.json
 *   metadata/cairn/<YYYYMMDDTHHmmssZ>/configuration.json + metadata.json
 *
 * Each backup is a folder that describes itself: its `metadata.json` is written LAST, so a folder without one is an
 * interrupted write, never a backup. The VM scanner reads `xo-vm-backups/` only, so these folders are never taken for VMs.
 */
import { createHash } from "node:crypto";
import { formatBackupTimestamp, parseBackupTimestamp } from "../../repository/layout.js";

export const METADATA_DIR = "metadata";
export const POOL_METADATA_DIR = `${METADATA_DIR}/pool`;
export const CAIRN_METADATA_DIR = `${METADATA_DIR}/cairn`;
export const METADATA_FILE = "metadata.json";
export const POOL_DATABASE_FILE = "pool-database.xml";
export const CONFIGURATION_FILE = "configuration.json";

export type MetadataKind = "POOL" | "CAIRN";

/** The `metadata.json` of a metadata backup. */
export interface MetadataBackupDescription {
  format: "cairn-metadata-backup";
  version: 1;
  kind: MetadataKind;
  /** Milliseconds since the epoch (the folder's name, at one-second precision). */
  timestamp: number;
  /** The data file, relative to the backup's folder. */
  data: string;
  sizeBytes: number;
  /** SHA-256 (hex) of the data file's bytes. */
  sha256: string;
  /** POOL: the pool as it was when backed up. */
  pool?: { uuid: string; name: string; cairnPoolId: string | null };
  /** CAIRN: whether passwords and keys are in the configuration (only when the remote is encrypted). */
  secretsIncluded?: boolean;
  jobId: string | null;
  jobName: string | null;
  runId: string | null;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function poolBackupFolder(poolUuid: string, time: number): string {
  if (!SEGMENT.test(poolUuid)) throw new Error(`the pool uuid ${JSON.stringify(poolUuid)} cannot name a folder`);
  return `${POOL_METADATA_DIR}/${poolUuid}/${formatBackupTimestamp(time)}`;
}

export function cairnBackupFolder(time: number): string {
  return `${CAIRN_METADATA_DIR}/${formatBackupTimestamp(time)}`;
}

/** The time a backup folder's name stands for, or undefined when the name is not a backup time. */
export function folderTime(name: string): number | undefined {
  return parseBackupTimestamp(name);
}

/** Parses a `metadata.json`; undefined when it is not one (another tool's file, a damaged one). */
export function parseDescription(text: string): MetadataBackupDescription | undefined {
  try {
    const value = JSON.parse(text) as Partial<MetadataBackupDescription>;
    if (value.format !== "cairn-metadata-backup" || value.version !== 1) return undefined;
    if (value.kind !== "POOL" && value.kind !== "CAIRN") return undefined;
    if (typeof value.timestamp !== "number" || typeof value.data !== "string" || !SEGMENT.test(value.data)) return undefined;
    if (value.kind === "POOL" && (typeof value.pool?.uuid !== "string" || typeof value.pool.name !== "string")) return undefined;
    return value as MetadataBackupDescription;
  } catch {
    return undefined;
  }
}

export function describe(description: MetadataBackupDescription): string {
  return `${JSON.stringify(description, null, 2)}\n`;
}

/** A hash that follows a stream's bytes as they pass. */
export function sha256Hex(): { update(chunk: Buffer): void; digest(): string } {
  const hash = createHash("sha256");
  return { update: (chunk) => void hash.update(chunk), digest: () => hash.digest("hex") };
}

/**
 * Backup times name folders at one-second precision: two backups of one pool (or of the configuration) in the same second
 * would collide, so each key's times strictly increase within this process.
 */
const lastTimes = new Map<string, number>();
export function nextBackupTime(key: string, now = Date.now()): number {
  const time = Math.max(Math.floor(now / 1000) * 1000, (lastTimes.get(key) ?? 0) + 1000);
  lastTimes.set(key, time);
  return time;
}
