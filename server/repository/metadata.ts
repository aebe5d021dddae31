import { createHash } from "node:crypto";
import { messageOf } from "../errors.js";
import { RepositoryError, RepositoryErrorReason } from "./repository-error.js";

/**
 * The metadata file of one backup (`<date>.json`): Xen Orchestra's fields (research/xen-orchestra-backups.md §1.2), so XO
 * reads what Cairn writes and the reverse, plus Cairn's own fields under `cairn`. See FORMAT.md for examples.
 */

/**
 * Cairn's metadata format version: a reader refuses a `cairn.formatVersion` it does not know. 2 added the integrity
 * records (checksums of every data file, the metadata's own seal): a Cairn that only knows 1 leaves such backups alone
 * (it would merge VHDs without keeping their block checksums right).
 */
export const METADATA_FORMAT_VERSION = 2;

/** The versions this Cairn reads (1: no checksums, read and restored unverified). */
export const READABLE_FORMAT_VERSIONS: readonly number[] = [1, 2];

/** The `version` XO writes in VM backup metadata; a reader refuses another major. */
export const XO_METADATA_VERSION = "2.0.0";

export type BackupMode = "full" | "delta";

export type BackupCompression = "none" | "gzip" | "zstd";

/** A XAPI record as XO stores it (plain JSON, fields as XAPI names them). */
export type XapiRecord = Record<string, unknown>;

/** Cairn's facts about one disk of a backup, keyed like `vhds` (by VDI ref). */
export interface CairnDiskInfo {
  /** The source VDI's uuid (the folder name under `vdis/<job>/`). */
  vdiUuid: string;
  name?: string;
  /** Bytes of the virtual disk. */
  virtualSize: number;
  /** True when this backup's VHD is differencing (its parent is an older backup's VHD of the same folder). */
  differencing: boolean;
  /** The `timestamp` (ms) of the backup whose VHD was the parent when written; absent for a full disk. */
  parentTimestamp?: number;
}

/** Cairn's own fields, under the `cairn` key (XO ignores unknown keys). */
export interface CairnFields {
  /** {@link METADATA_FORMAT_VERSION} when written; readers refuse a major they do not know. */
  formatVersion: number;
  /** Whether the snapshot was quiesced (false after a fallback to a normal snapshot). */
  quiesced: boolean;
  /** Compression of the XVA (full) or "none" (delta: VHDs are not compressed). */
  compression: BackupCompression;
  /** Per disk, keyed by VDI ref as in `vhds`. Full backups list the XVA's disks here too. */
  disks?: Record<string, CairnDiskInfo>;
  /** How each data file can be checked (formatVersion 2). */
  integrity?: IntegrityRecord;
  /**
   * SHA-256 (hex) of this file's own text with this value written as 64 zeros (formatVersion 2): a flipped byte anywhere
   * in the metadata is found before anything trusts it.
   */
  metadataSha256?: string;
  /**
   * Until when (ISO 8601, UTC) every file of this backup is immutable on the remote (its immutability window; FORMAT.md,
   * "Immutability"). Recorded here so that a re-index and a fresh Cairn know it; retention and removal leave the backup
   * alone until then.
   */
  immutableUntil?: string;
}

/** `cairn.integrity`: the checksums recorded when the backup was written. */
export interface IntegrityRecord {
  algorithm: "sha256";
  /** Keyed by the path as the metadata names the file (`./<date>.xva`, `vdis/.../<date>.vhd`). */
  files: Record<string, FileIntegrity>;
}

/**
 * An XVA: the SHA-256 and size of the whole file (it never changes). A VHD: `blockChecksums: true`, its per-block
 * SHA-256 sit in `<vhd>.blocksums` beside it (server/formats/FORMAT.md): a merge rewrites a VHD, and rewrites that file
 * with it, so nothing in the metadata goes stale.
 */
export interface FileIntegrity {
  sha256?: string;
  size?: number;
  blockChecksums?: boolean;
}

/** One backup's metadata, as on the remote. */
export interface BackupMetadata {
  /** Always {@link XO_METADATA_VERSION} when Cairn writes. */
  version: string;
  mode: BackupMode;
  jobId: string;
  scheduleId: string;
  /** ms since the epoch; the file names use it at second precision. */
  timestamp: number;
  /** The source VM's XAPI record. */
  vm: XapiRecord;
  /** The exported snapshot's XAPI record (the VM itself for an offline export). */
  vmSnapshot: XapiRecord;
  /** Bytes written for this backup (XVA, or the sum of its VHDs). */
  size: number;
  /** XO's long-term-retention tags. */
  tags?: string[];
  /** Full: `./<date>.xva`. */
  xva?: string;
  /** Delta: VBD ref -> record. */
  vbds?: Record<string, XapiRecord>;
  /** Delta: VDI ref -> record. */
  vdis?: Record<string, XapiRecord>;
  /** Delta: VIF ref -> record. */
  vifs?: Record<string, XapiRecord>;
  vtpms?: unknown[];
  /** Delta: VDI ref -> `vdis/<job>/<vdi uuid>/<date>.vhd`, relative to the VM folder. */
  vhds?: Record<string, string>;
  /** Delta: VDI ref -> whether the VHD is differencing. */
  isVhdDifferencing?: Record<string, boolean>;
  /** Absent in metadata written by XO. */
  cairn?: CairnFields;
  /** Other XO fields are kept as they are. */
  [key: string]: unknown;
}

type Check = (value: unknown) => boolean;

const isString: Check = (v) => typeof v === "string" && v.length > 0;
const isNumber: Check = (v) => typeof v === "number" && Number.isFinite(v) && v >= 0;
const isBoolean: Check = (v) => typeof v === "boolean";
const isObject: Check = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isArray: Check = (v) => Array.isArray(v);
const recordOf =
  (check: Check): Check =>
  (v) =>
    isObject(v) && Object.values(v as object).every(check);
const isMode: Check = (v) => v === "full" || v === "delta";
const isIsoDate: Check = (v) => typeof v === "string" && !Number.isNaN(Date.parse(v));
const isSha256: Check = (v) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v);
const isFileIntegrity: Check = (v) => {
  if (!isObject(v)) return false;
  const file = v as FileIntegrity;
  return (
    (file.sha256 === undefined || isSha256(file.sha256)) &&
    (file.size === undefined || isNumber(file.size)) &&
    (file.blockChecksums === undefined || isBoolean(file.blockChecksums))
  );
};
const isCompression: Check = (v) => v === "none" || v === "gzip" || v === "zstd";

interface FieldRule {
  field: string;
  expected: string;
  check: Check;
  /** Required for these modes; optional (checked when present) otherwise. */
  requiredFor: readonly BackupMode[];
}

const BOTH: readonly BackupMode[] = ["full", "delta"];

/** The fields of a VM backup metadata file, one rule per line (XO's shape plus `cairn`). */
const RULES: readonly FieldRule[] = [
  { field: "version", expected: "a string", check: isString, requiredFor: BOTH },
  { field: "mode", expected: '"full" or "delta"', check: isMode, requiredFor: BOTH },
  { field: "jobId", expected: "a non-empty string", check: isString, requiredFor: BOTH },
  { field: "scheduleId", expected: "a non-empty string", check: isString, requiredFor: BOTH },
  { field: "timestamp", expected: "a time in ms", check: isNumber, requiredFor: BOTH },
  { field: "vm", expected: "an object (the VM record)", check: isObject, requiredFor: BOTH },
  { field: "vmSnapshot", expected: "an object (the snapshot record)", check: isObject, requiredFor: BOTH },
  { field: "size", expected: "a number of bytes", check: isNumber, requiredFor: [] },
  { field: "tags", expected: "an array", check: isArray, requiredFor: [] },
  { field: "xva", expected: "a relative path", check: isString, requiredFor: ["full"] },
  { field: "vbds", expected: "an object of records", check: recordOf(isObject), requiredFor: [] },
  { field: "vdis", expected: "an object of records", check: recordOf(isObject), requiredFor: [] },
  { field: "vifs", expected: "an object of records", check: recordOf(isObject), requiredFor: [] },
  { field: "vtpms", expected: "an array", check: isArray, requiredFor: [] },
  { field: "vhds", expected: "an object of relative paths", check: recordOf(isString), requiredFor: ["delta"] },
  { field: "isVhdDifferencing", expected: "an object of booleans", check: recordOf(isBoolean), requiredFor: [] },
  { field: "cairn", expected: "an object", check: isObject, requiredFor: [] },
];

const CAIRN_RULES: readonly FieldRule[] = [
  { field: "cairn.quiesced", expected: "a boolean", check: isBoolean, requiredFor: BOTH },
  { field: "cairn.compression", expected: '"none", "gzip" or "zstd"', check: isCompression, requiredFor: BOTH },
  { field: "cairn.disks", expected: "an object", check: recordOf(isObject), requiredFor: [] },
  { field: "cairn.integrity", expected: "an object", check: isObject, requiredFor: [] },
  { field: "cairn.integrity.files", expected: "an object of file records", check: recordOf(isFileIntegrity), requiredFor: [] },
  { field: "cairn.metadataSha256", expected: "64 hex digits", check: isSha256, requiredFor: [] },
  { field: "cairn.immutableUntil", expected: "an ISO 8601 date", check: isIsoDate, requiredFor: [] },
];

const DISK_RULES: readonly FieldRule[] = [
  { field: "vdiUuid", expected: "a string", check: isString, requiredFor: BOTH },
  { field: "name", expected: "a string", check: (v) => typeof v === "string", requiredFor: [] },
  { field: "virtualSize", expected: "a number of bytes", check: isNumber, requiredFor: BOTH },
  { field: "differencing", expected: "a boolean", check: isBoolean, requiredFor: BOTH },
  { field: "parentTimestamp", expected: "a time in ms", check: isNumber, requiredFor: [] },
];

function valueAt(object: Record<string, unknown>, field: string): unknown {
  return field.split(".").reduce<unknown>((at, key) => (isObject(at) ? (at as Record<string, unknown>)[key] : undefined), object);
}

function applyRules(object: Record<string, unknown>, rules: readonly FieldRule[], mode: BackupMode, prefix: string, where: string): void {
  for (const rule of rules) {
    const value = valueAt(object, rule.field);
    if (value === undefined && !rule.requiredFor.includes(mode)) continue;
    if (!rule.check(value)) {
      throw new RepositoryError(
        RepositoryErrorReason.InvalidMetadata,
        `${where}: field ${prefix}${rule.field} must be ${rule.expected}${value === undefined ? " and is missing" : `, got ${JSON.stringify(value)?.slice(0, 80)}`}; the file is not a usable backup metadata (fix or remove it)`,
        { path: where, field: `${prefix}${rule.field}` },
      );
    }
  }
}

/**
 * Parses and checks a metadata file. Accepts what XO writes (no `cairn` key) and what Cairn writes.
 * @param where the remote path, for messages
 * @throws RepositoryError UNSUPPORTED_FORMAT_VERSION (a `cairn.formatVersion` other than 1, or an XO `version` whose major
 *   is not 2), INVALID_METADATA (not JSON, not an object, a field of the wrong type)
 */
export function parseBackupMetadata(content: string | Uint8Array, where: string): BackupMetadata {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof content === "string" ? content : Buffer.from(content).toString("utf8"));
  } catch (error) {
    throw new RepositoryError(
      RepositoryErrorReason.InvalidMetadata,
      `${where} is not JSON (${messageOf(error)}); it is not a usable backup metadata`,
      { path: where },
      { cause: error },
    );
  }
  if (!isObject(parsed)) {
    throw new RepositoryError(
      RepositoryErrorReason.InvalidMetadata,
      `${where} holds ${JSON.stringify(parsed)?.slice(0, 40)}, expected a JSON object`,
      { path: where },
    );
  }
  const object = parsed as Record<string, unknown>;
  checkVersions(object, where);
  checkSeal(object, content, where);
  const mode: BackupMode = isMode(object.mode) ? (object.mode as BackupMode) : "full";
  applyRules(object, RULES, mode, "", where);
  if (object.cairn !== undefined) {
    applyRules(object, CAIRN_RULES, mode, "", where);
    const disks = (object.cairn as CairnFields).disks ?? {};
    for (const [ref, disk] of Object.entries(disks))
      applyRules(disk as unknown as Record<string, unknown>, DISK_RULES, mode, `cairn.disks.${ref}.`, where);
  }
  return object as BackupMetadata;
}

/** Versions are checked before anything else, so a newer file is refused for its version, not for a field it added. */
function checkVersions(object: Record<string, unknown>, where: string): void {
  const cairn = object.cairn;
  if (isObject(cairn)) {
    const version = (cairn as Record<string, unknown>).formatVersion;
    if (typeof version !== "number" || !READABLE_FORMAT_VERSIONS.includes(version)) {
      throw new RepositoryError(
        RepositoryErrorReason.UnsupportedFormatVersion,
        `${where} has cairn.formatVersion ${JSON.stringify(version)}, but this Cairn reads only formatVersion ${READABLE_FORMAT_VERSIONS.join(" and ")}: it was written by another (newer) version of Cairn; upgrade Cairn to read this backup (it is left untouched)`,
        { path: where, formatVersion: version, supported: READABLE_FORMAT_VERSIONS },
      );
    }
  }
  const xo = object.version;
  if (typeof xo === "string" && xo.split(".")[0] !== XO_METADATA_VERSION.split(".")[0]) {
    throw new RepositoryError(
      RepositoryErrorReason.UnsupportedFormatVersion,
      `${where} has version ${JSON.stringify(xo)}, but this Cairn reads Xen Orchestra VM backup metadata of major version 2 (${XO_METADATA_VERSION}); the backup is left untouched`,
      { path: where, version: xo },
    );
  }
}

/**
 * The metadata as written: keys in a stable order, two-space indented (small files; people read them). Metadata with a
 * `cairn` part is sealed: `cairn.metadataSha256` is the SHA-256 of the text with that value written as 64 zeros.
 */
export function serializeBackupMetadata(metadata: BackupMetadata): string {
  if (!metadata.cairn) return `${JSON.stringify(metadata, null, 2)}\n`;
  const unsealed = `${JSON.stringify({ ...metadata, cairn: { ...metadata.cairn, metadataSha256: SEAL_PLACEHOLDER } }, null, 2)}\n`;
  return unsealed.replace(`"metadataSha256": "${SEAL_PLACEHOLDER}"`, `"metadataSha256": "${sha256Hex(unsealed)}"`);
}

const SEAL_PLACEHOLDER = "0".repeat(64);
const SEAL = /"metadataSha256"\s*:\s*"([0-9a-f]{64})"/;

function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** A sealed metadata must hash to its seal: a flipped byte (a digit of a size, a letter of a path) is found here. */
function checkSeal(object: Record<string, unknown>, content: string | Uint8Array, where: string): void {
  const cairn = object.cairn as Record<string, unknown> | undefined;
  if (!isObject(cairn) || cairn?.metadataSha256 === undefined) return;
  const text = typeof content === "string" ? content : Buffer.from(content).toString("utf8");
  const match = SEAL.exec(text);
  const actual = match ? sha256Hex(text.replace(match[0], `"metadataSha256": "${SEAL_PLACEHOLDER}"`)) : undefined;
  if (!match || match[1] !== cairn.metadataSha256 || actual !== match[1]) {
    throw new RepositoryError(
      RepositoryErrorReason.Damaged,
      `${where} does not match its own checksum (cairn.metadataSha256): the file is damaged, so this backup is not trusted or listed; restore another restore point, and remove this backup once a newer one exists`,
      { path: where },
    );
  }
}

/** The relative file paths a metadata names: its XVA, or its VHDs. */
export function filesOfMetadata(metadata: BackupMetadata): string[] {
  return metadata.mode === "full" ? (metadata.xva === undefined ? [] : [metadata.xva]) : Object.values(metadata.vhds ?? {});
}

/** Until when a backup's files are immutable, from its metadata; undefined when it has no window. */
export function immutableUntilOf(metadata: BackupMetadata | undefined): Date | undefined {
  const until = metadata?.cairn?.immutableUntil;
  return until === undefined ? undefined : new Date(until);
}
