import type { Remote } from "../remotes/remote.js";
import {
  VM_BACKUPS_DIR,
  blockChecksumsPathOf,
  folderOf,
  nameOf,
  parseBackupTimestamp,
  resolveInVmDir,
  vdiUuidOfPath,
  vmDir,
} from "./layout.js";
import { type BackupMetadata, type BackupMode, filesOfMetadata, parseBackupMetadata } from "./metadata.js";
import type { FileDigest } from "./file-digest.js";
import { type UnreadableFile, VhdFolder, isPlainVhdName } from "./vhd-lineage.js";
import { messageOf } from "../errors.js";

/** One disk of a backup. */
export interface ScannedDisk {
  /** The key in the metadata's `vhds` (or `cairn.disks`). */
  vdiRef: string;
  /** The source VDI's uuid. */
  vdiUuid: string;
  name: string | null;
  /** Bytes. */
  virtualSize: number;
  /** Remote paths of the VHD chain, root (full) first, this backup's own VHD last; empty for a full (XVA) backup. */
  chain: string[];
  /**
   * Beside `chain`, one per file: the remote path of its block checksums (`.blocksums`), or undefined for a VHD that has
   * none (written before Cairn recorded them, or merged with such a one): that file is read unverified.
   */
  checksums: Array<string | undefined>;
}

/** One restorable backup (its metadata exists and every file it needs is there). */
export interface ScannedBackup {
  metadataPath: string;
  vmUuid: string;
  vmName: string | null;
  /** ms since the epoch. */
  timestamp: number;
  mode: BackupMode;
  jobId: string;
  scheduleId: string;
  /** Bytes written for it (the metadata's `size`). */
  size: number;
  /** null when unknown (metadata written by XO). */
  quiesced: boolean | null;
  compression: string | null;
  /** Full: the XVA's remote path. */
  xvaPath?: string;
  /** Full: the XVA's SHA-256 and size as written (formatVersion 2), to check it while it is read. */
  xvaDigest?: FileDigest;
  disks: ScannedDisk[];
  metadata: BackupMetadata;
}

/** What kind of thing a scan found wrong: code decides on this (and on `path`), never on the sentence. */
export type ScanProblemKind =
  /** A Xen Orchestra VHD directory (`.alias.vhd`): Cairn reads VHD files only. */
  | "XO_VHD_DIRECTORY"
  /** A merge state file (`.vhd.merge.json`): an interrupted merge, resumed by the next retention or clean. */
  | "INTERRUPTED_MERGE"
  /** A backup whose metadata reads but whose files are missing or whose chain is broken: not listed. */
  | "INCOMPLETE_BACKUP"
  /** A metadata or VHD file that could not be read (one of `VmFolderScan.unreadable`): the folder is left alone. */
  | "UNREADABLE_FILE"
  /** A whole VM folder that could not be scanned. */
  | "VM_FOLDER_UNSCANNED";

/** One thing a scan found wrong, as data; `message` is the sentence for people (and the API's `problems`). */
export interface ScanProblem {
  kind: ScanProblemKind;
  /** The VM folder it was found in. */
  vmUuid: string;
  /** The remote path it is about (a file, or the VM folder for VM_FOLDER_UNSCANNED). */
  path: string;
  /** One sentence, starting with the path. */
  message: string;
}

export interface ScanResult {
  backups: ScannedBackup[];
  /** Unreadable metadata, incomplete backups, broken chains, interrupted merges: one each, as data. */
  issues: ScanProblem[];
  /** The sentences of `issues`, in the same order: for callers that only show them. */
  problems: string[];
}

/** A metadata file of a VM folder, whether or not it is usable. */
export interface MetadataEntry {
  path: string;
  /** From the file name. */
  timestamp: number;
  metadata?: BackupMetadata;
  /** Why it cannot be read (then `metadata` is absent) or why the backup is incomplete. */
  error?: string;
  backup?: ScannedBackup;
}

/** Everything the repository knows about one VM folder, read in one pass. */
export interface VmFolderScan {
  vmUuid: string;
  /** Every file under the VM folder (remote paths), temporary names included. */
  files: string[];
  /** Sorted by time, oldest first. */
  entries: MetadataEntry[];
  /** Disk folders (`vdis/<job>/<vdi>`) -> their VHDs. */
  vhdFolders: Map<string, VhdFolder>;
  /**
   * Metadata and VHD files that could not be read (an I/O error, or damaged content). While any is listed, what the folder
   * needs is not known for sure: retention, merges and the cleaner must delete and merge nothing in it (fail closed).
   */
  unreadable: UnreadableFile[];
  /** What is wrong in the folder, as data (the unreadable files are among them, as UNREADABLE_FILE). */
  issues: ScanProblem[];
  /** The sentences of `issues`, in the same order: for callers that only show them. */
  problems: string[];
}

/**
 * Rebuilds the list of backups from a remote: every `xo-vm-backups/<vm>/<date>.json` whose files all exist and whose VHD
 * chains are whole. Temporary files are ignored; metadata that cannot be read, a backup whose XVA or VHD is missing, and a
 * broken chain (a differencing VHD whose parent uuid is not in its folder: chains follow the VHD headers, not folder
 * order) are each a problem, never a backup. Reads only; changes nothing.
 */
export async function scanRepository(remote: Remote, options: { vmUuid?: string } = {}): Promise<ScanResult> {
  const vms = options.vmUuid !== undefined ? [options.vmUuid] : await listVmUuids(remote);
  const backups: ScannedBackup[] = [];
  const issues: ScanProblem[] = [];
  for (const vmUuid of vms) {
    try {
      const scan = await scanVmFolder(remote, vmUuid);
      backups.push(...scan.entries.flatMap((entry) => (entry.backup ? [entry.backup] : [])));
      issues.push(...scan.issues);
    } catch (error) {
      const path = `${VM_BACKUPS_DIR}/${vmUuid}`;
      issues.push({ kind: "VM_FOLDER_UNSCANNED", vmUuid, path, message: `${path}: could not be scanned (${messageOf(error)})` });
    }
  }
  return { backups, issues, problems: issues.map((issue) => issue.message) };
}

/** The VM folders under `xo-vm-backups/` (skipping lock files and dot-files, as XO does). */
export async function listVmUuids(remote: Remote): Promise<string[]> {
  const names = await remote.list(VM_BACKUPS_DIR);
  return names.filter((name) => !name.startsWith(".") && !name.endsWith(".lock") && !remote.isTemporaryName(name));
}

/** Reads one VM folder: its files, metadata, VHD lineage, and which backups are complete. */
export async function scanVmFolder(remote: Remote, vmUuid: string): Promise<VmFolderScan> {
  const dir = vmDir(vmUuid);
  const files = (await remote.list(dir, { recursive: true })).map((relative) => `${dir}/${relative}`);
  const present = new Set(files.filter((path) => !remote.isTemporaryName(path)));
  const issues: ScanProblem[] = [];
  const problem = (kind: ScanProblemKind, path: string, sentence: string) =>
    issues.push({ kind, vmUuid, path, message: `${path}: ${sentence}` });

  const vhdsByFolder = new Map<string, string[]>();
  for (const path of present) {
    if (vdiUuidOfPath(path) === undefined) continue;
    if (path.endsWith(".alias.vhd"))
      problem(
        "XO_VHD_DIRECTORY",
        path,
        "a Xen Orchestra VHD directory (alias); Cairn reads VHD files only, so backups using it are not listed",
      );
    if (path.endsWith(".merge.json"))
      problem("INTERRUPTED_MERGE", path, "an interrupted merge; the next retention or clean of this VM resumes it");
    if (!isPlainVhdName(nameOf(path))) continue;
    const folder = folderOf(path);
    vhdsByFolder.set(folder, [...(vhdsByFolder.get(folder) ?? []), path]);
  }
  const unreadable: UnreadableFile[] = [];
  const vhdFolders = new Map<string, VhdFolder>();
  for (const [folder, paths] of vhdsByFolder) vhdFolders.set(folder, await VhdFolder.load(remote, paths, unreadable));

  const entries: MetadataEntry[] = [];
  for (const path of present) {
    if (folderOf(path) !== dir || !path.endsWith(".json")) continue;
    const timestamp = parseBackupTimestamp(nameOf(path));
    if (timestamp === undefined) continue;
    const entry: MetadataEntry = { path, timestamp };
    entries.push(entry);
    try {
      entry.metadata = parseBackupMetadata(await remote.readFile(path), path);
    } catch (error) {
      entry.error = messageOf(error);
      unreadable.push({ path, reason: `unreadable metadata (${entry.error})` });
      continue;
    }
    try {
      entry.backup = describeBackup(vmUuid, path, entry.metadata, present, vhdFolders);
    } catch (error) {
      entry.error = messageOf(error);
      problem("INCOMPLETE_BACKUP", path, `incomplete backup, not listed: ${entry.error}`);
    }
  }
  entries.sort((a, b) => a.timestamp - b.timestamp);
  for (const file of unreadable) {
    problem(
      "UNREADABLE_FILE",
      file.path,
      `${file.reason}; nothing is deleted or merged in this VM's folder until it reads again (a later run retries; if it stays damaged, run a verify and remove or repair it)`,
    );
  }
  return { vmUuid, files, entries, vhdFolders, unreadable, issues, problems: issues.map((issue) => issue.message) };
}

/**
 * The files of a folder whose block checksums cannot be trusted while a merge there is unfinished: the merge rewrites its
 * parent under the parent's old table, and once the parent is renamed over the child, the child's path holds the merged
 * file beside the child's old table until the merge ends. Every other file (the child before the rename, its children)
 * is untouched and stays verified. Two VHDs with one uuid (a merge whose state file is gone) are both unverified.
 */
function filesMidMerge(folder: VhdFolder, folderPath: string, present: Set<string>): Set<string> {
  const unverified = new Set<string>();
  for (const path of present) {
    if (!path.startsWith(`${folderPath}/`) || !path.endsWith(".vhd.merge.json")) continue;
    const child = folder.nodes.get(path.slice(0, -".merge.json".length));
    const parent = child ? folder.parentOf(child) : undefined;
    if (parent) unverified.add(parent.path);
    else if (child) unverified.add(child.path); // the parent is already renamed over the child
  }
  const byUuid = new Map<string, string>();
  for (const node of folder.nodes.values()) {
    const same = byUuid.get(node.uuid);
    if (same !== undefined) unverified.add(same).add(node.path);
    byUuid.set(node.uuid, node.path);
  }
  return unverified;
}

function xvaDigestOf(metadata: BackupMetadata): FileDigest | undefined {
  const record = metadata.xva === undefined ? undefined : metadata.cairn?.integrity?.files[metadata.xva];
  return record?.sha256 !== undefined && record.size !== undefined ? { sha256: record.sha256, size: record.size } : undefined;
}

/** A usable backup from its metadata, or throws saying what is missing. */
function describeBackup(
  vmUuid: string,
  path: string,
  metadata: BackupMetadata,
  present: Set<string>,
  vhdFolders: Map<string, VhdFolder>,
): ScannedBackup {
  for (const relative of filesOfMetadata(metadata)) {
    const remotePath = resolveInVmDir(vmUuid, relative);
    if (!present.has(remotePath)) throw new Error(`its file ${remotePath} is missing`);
  }
  const cairnDisks = metadata.cairn?.disks ?? {};
  const disks: ScannedDisk[] = [];
  if (metadata.mode === "delta") {
    for (const [vdiRef, relative] of Object.entries(metadata.vhds ?? {})) {
      const remotePath = resolveInVmDir(vmUuid, relative);
      const folder = vhdFolders.get(folderOf(remotePath));
      if (!folder) throw new Error(`its file ${remotePath} is not a readable VHD`);
      const chain = folder.chainOf(remotePath);
      const midMerge = filesMidMerge(folder, folderOf(remotePath), present);
      const record = metadata.vdis?.[vdiRef];
      disks.push({
        vdiRef,
        vdiUuid: cairnDisks[vdiRef]?.vdiUuid ?? vdiUuidOfPath(remotePath) ?? vdiRef,
        name: cairnDisks[vdiRef]?.name ?? (typeof record?.name_label === "string" ? record.name_label : null),
        virtualSize: folder.nodes.get(remotePath)?.virtualSize ?? cairnDisks[vdiRef]?.virtualSize ?? 0,
        chain,
        // Where a merge is unfinished, the file it rewrites is read unverified until the next retention or clean finishes it.
        checksums: chain.map((file) =>
          present.has(blockChecksumsPathOf(file)) && !midMerge.has(file) ? blockChecksumsPathOf(file) : undefined,
        ),
      });
    }
  } else {
    for (const [vdiRef, disk] of Object.entries(cairnDisks)) {
      disks.push({ vdiRef, vdiUuid: disk.vdiUuid, name: disk.name ?? null, virtualSize: disk.virtualSize, chain: [], checksums: [] });
    }
  }
  return {
    metadataPath: path,
    vmUuid,
    vmName: typeof metadata.vm.name_label === "string" ? metadata.vm.name_label : null,
    timestamp: metadata.timestamp,
    mode: metadata.mode,
    jobId: metadata.jobId,
    scheduleId: metadata.scheduleId,
    size: metadata.size ?? 0,
    quiesced: metadata.cairn?.quiesced ?? null,
    compression: metadata.cairn?.compression ?? null,
    ...(metadata.mode === "full" && metadata.xva !== undefined
      ? { xvaPath: resolveInVmDir(vmUuid, metadata.xva), xvaDigest: xvaDigestOf(metadata) }
      : {}),
    disks,
    metadata,
  };
}
