/**
 * Where things live on a remote: Xen Orchestra's layout (research/xen-orchestra-backups.md §1.1), so a repository moves
 * between XO and Cairn. Every function is pure; paths are remote paths (relative, "/"-separated). See FORMAT.md.
 *
 * ```
 * xo-vm-backups/<vm uuid>/<YYYYMMDDTHHmmssZ>.json            metadata, written last
 * xo-vm-backups/<vm uuid>/<YYYYMMDDTHHmmssZ>.xva             full backup
 * xo-vm-backups/<vm uuid>/vdis/<job id>/<vdi uuid>/<YYYYMMDDTHHmmssZ>.vhd   delta backup, one file per disk
 * xo-vm-backups/<vm uuid>/vdis/<job id>/<vdi uuid>/<YYYYMMDDTHHmmssZ>.vhd.blocksums   its block checksums
 * xo-vm-backups/.cairn-locks/<vm uuid>/                      Cairn's lock claims and restore leases of the VM folder
 * ```
 */

/** The folder holding every VM's backups. */
export const VM_BACKUPS_DIR = "xo-vm-backups";

/** The folder of one VM's disks, inside the VM folder. */
export const VDIS_DIR = "vdis";

/**
 * XO's cache of a VM folder's metadata. Cairn never reads it; it deletes it whenever it adds or removes a backup, so XO
 * rebuilds it from the metadata files (XO rebuilds a missing or unreadable cache).
 */
export const XO_CACHE_NAME = "cache.json.gz";

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const TIMESTAMP_NAME = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/**
 * Checks that an id (VM uuid, job id, VDI uuid) is usable as one folder name on every kind of remote.
 * @throws Error naming the field, for a value with a slash, a leading dot, spaces or other characters
 */
export function checkSegment(field: string, value: string): string {
  if (typeof value !== "string" || !SEGMENT.test(value) || value.endsWith(".lock")) {
    throw new Error(
      `${field} must be letters, digits, '-', '_' or '.' (not starting with '.', not ending in '.lock'), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** `20250131T220003Z` (UTC, second precision) for a time in ms since the epoch or a Date: XO's `%Y%m%dT%H%M%SZ`. */
export function formatBackupTimestamp(time: number | Date): string {
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) throw new Error(`not a valid time: ${String(time)}`);
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "");
}

/** The time (ms since the epoch) of a `YYYYMMDDTHHmmssZ` name (with or without an extension), or undefined. */
export function parseBackupTimestamp(name: string): number | undefined {
  const match = TIMESTAMP_NAME.exec(name.replace(/\..*$/, ""));
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match.map(Number);
  const time = Date.UTC(y, mo - 1, d, h, mi, s);
  return formatBackupTimestamp(time) === match[0] ? time : undefined;
}

/** `xo-vm-backups/<vm uuid>` */
export function vmDir(vmUuid: string): string {
  return `${VM_BACKUPS_DIR}/${checkSegment("vmUuid", vmUuid)}`;
}

/** `xo-vm-backups/<vm uuid>.cairn.lock`: beside the VM folder, ending in `.lock` so XO's VM listing skips it. */
export function vmLockPath(vmUuid: string): string {
  return `${VM_BACKUPS_DIR}/${checkSegment("vmUuid", vmUuid)}.cairn.lock`;
}

/** `xo-vm-backups/<vm uuid>/<date>.json` */
export function metadataPath(vmUuid: string, time: number | Date): string {
  return `${vmDir(vmUuid)}/${formatBackupTimestamp(time)}.json`;
}

/** `./<date>.xva`: the `xva` field of full metadata, relative to the VM folder as XO writes it. */
export function xvaRelativePath(time: number | Date): string {
  return `./${formatBackupTimestamp(time)}.xva`;
}

/** `vdis/<job id>/<vdi uuid>/<date>.vhd`: a `vhds` value of delta metadata, relative to the VM folder. */
export function vhdRelativePath(jobId: string, vdiUuid: string, time: number | Date): string {
  return `${VDIS_DIR}/${checkSegment("jobId", jobId)}/${checkSegment("vdiUuid", vdiUuid)}/${formatBackupTimestamp(time)}.vhd`;
}

/**
 * The remote path of a file named in metadata (`./x.xva`, `vdis/...`), relative to the VM folder.
 * @throws Error when the relative path leaves the VM folder or is not a clean path
 */
export function resolveInVmDir(vmUuid: string, relative: string): string {
  const trimmed = relative.replace(/^(\.\/)+/, "");
  const segments = trimmed.split("/");
  if (trimmed === "" || trimmed.startsWith("/") || segments.some((s) => s === "" || s === "." || s === ".." || s.includes("\\"))) {
    throw new Error(`the path ${JSON.stringify(relative)} does not name a file inside the VM folder`);
  }
  return `${vmDir(vmUuid)}/${trimmed}`;
}

/** The VDI uuid of a disk path `.../vdis/<job>/<vdi>/<date>.vhd`, or undefined. */
export function vdiUuidOfPath(path: string): string | undefined {
  const parts = path.split("/");
  const at = parts.lastIndexOf(VDIS_DIR);
  return at >= 0 && parts.length === at + 4 ? parts[at + 2] : undefined;
}

/** What ends the name of a VHD's block checksum file (server/formats/FORMAT.md, "Block checksums"). */
export const BLOCK_CHECKSUMS_SUFFIX = ".blocksums";

/** `<vhd path>.blocksums`: the block checksums of one VHD, beside it. */
export function blockChecksumsPathOf(vhdPath: string): string {
  return `${vhdPath}${BLOCK_CHECKSUMS_SUFFIX}`;
}

/** The folder part of a remote path. */
export function folderOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/** The last segment of a remote path. */
export function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
