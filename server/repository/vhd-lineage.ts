import { DiskType, FOOTER_SIZE, HEADER_SIZE, VhdError, decodeFooter, decodeHeader } from "../formats/vhd/index.js";
import { openRemoteVhd } from "./remote-vhd.js";
import type { Remote } from "../remotes/remote.js";
import { nameOf } from "./layout.js";
import { RepositoryError, RepositoryErrorReason } from "./repository-error.js";
import { messageOf } from "../errors.js";

/** A file of a VM folder that could not be read (an I/O error, or damaged content), and why. */
export interface UnreadableFile {
  path: string;
  reason: string;
}

/** What a VHD's footer and header say about its place in a chain. */
export interface VhdIdentity {
  /** Remote path. */
  path: string;
  /** File name (`<date>.vhd`); names sort in time order. */
  name: string;
  uuid: string;
  differencing: boolean;
  /** The parent footer's uuid, for a differencing disk. */
  parentUuid?: string;
  virtualSize: number;
  fileSize: number;
}

/**
 * Reads a VHD's footer (last 512 bytes) and, when dynamic or differencing, its header, through `openRandomAccess`. When
 * the trailing footer is damaged, the whole file is opened as {@link VhdFile} does, which falls back to the footer copy
 * at offset 0 when that one is intact and the file is not cut (the damage is for a verify to report and repair).
 */
export async function readVhdIdentity(remote: Remote, path: string): Promise<VhdIdentity> {
  try {
    return await readFromTrailingFooter(remote, path);
  } catch (error) {
    if (!(error instanceof VhdError) || (error.code !== "VHD_BAD_COOKIE" && error.code !== "VHD_BAD_CHECKSUM")) throw error;
    const file = await openRemoteVhd(remote, path);
    try {
      if (file.footerDamaged !== "trailing") throw error;
      return {
        path,
        name: nameOf(path),
        uuid: file.footer.uuid,
        differencing: file.diskType === DiskType.Differencing,
        parentUuid: file.header?.parentUuid,
        virtualSize: file.footer.currentSize,
        fileSize: file.size,
      };
    } finally {
      await file.close();
    }
  }
}

async function readFromTrailingFooter(remote: Remote, path: string): Promise<VhdIdentity> {
  const file = await remote.openRandomAccess(path);
  try {
    const footerAt = file.size - FOOTER_SIZE;
    if (footerAt < 0) throw new Error(`${path} is ${file.size} bytes, shorter than a VHD footer`);
    const footer = decodeFooter(await file.read(footerAt, FOOTER_SIZE), { file: path, offset: footerAt });
    let parentUuid: string | undefined;
    if (footer.diskType === DiskType.Differencing && footer.dataOffset !== null) {
      const header = decodeHeader(await file.read(footer.dataOffset, HEADER_SIZE), { file: path, offset: footer.dataOffset });
      parentUuid = header.parentUuid;
    }
    return {
      path,
      name: nameOf(path),
      uuid: footer.uuid,
      differencing: footer.diskType === DiskType.Differencing,
      parentUuid,
      virtualSize: footer.currentSize,
      fileSize: file.size,
    };
  } finally {
    await file.close();
  }
}

/** Whether a file name is a VHD Cairn reads as one file (`<name>.vhd`, not XO's `.alias.vhd` of a VHD directory). */
export function isPlainVhdName(name: string): boolean {
  return name.endsWith(".vhd") && !name.endsWith(".alias.vhd");
}

/**
 * The VHDs of one disk folder (`vdis/<job>/<vdi>/`) and how they chain. Chains follow the parent uuid in each
 * differencing header (not folder order): a child names its parent's footer uuid, as XAPI and XO write them.
 *
 * A merge interrupted after its identity step leaves two files with one uuid: the older-named one is the merged disk,
 * the newer one the stale child it replaces; a chain then goes through both and `VhdChain` skips the stale one.
 */
export class VhdFolder {
  readonly nodes = new Map<string, VhdIdentity>();
  private readonly byUuid = new Map<string, VhdIdentity[]>();

  constructor(identities: VhdIdentity[]) {
    for (const node of identities) this.add(node);
  }

  /**
   * Reads every plain VHD among `paths`. A file that cannot be read is left out of the folder and added to `unreadable`:
   * the lineage is then incomplete, so nothing may be deleted or merged from it (see {@link VmFolderScan.unreadable}).
   */
  static async load(remote: Remote, paths: string[], unreadable: UnreadableFile[]): Promise<VhdFolder> {
    const identities: VhdIdentity[] = [];
    for (const path of paths) {
      try {
        identities.push(await readVhdIdentity(remote, path));
      } catch (error) {
        unreadable.push({ path, reason: `not a readable VHD (${messageOf(error)})` });
      }
    }
    return new VhdFolder(identities);
  }

  private add(node: VhdIdentity): void {
    this.nodes.set(node.path, node);
    const same = this.byUuid.get(node.uuid) ?? [];
    same.push(node);
    same.sort((a, b) => a.name.localeCompare(b.name));
    this.byUuid.set(node.uuid, same);
  }

  /** Replaces a node (after a merge changed what a path holds) or removes it (`next` undefined). */
  update(path: string, next: VhdIdentity | undefined): void {
    const old = this.nodes.get(path);
    if (old) {
      this.nodes.delete(path);
      const same = (this.byUuid.get(old.uuid) ?? []).filter((node) => node.path !== path);
      if (same.length > 0) this.byUuid.set(old.uuid, same);
      else this.byUuid.delete(old.uuid);
    }
    if (next) this.add(next);
  }

  /** The direct parent of a node in this folder, or undefined (full disk, or parent missing). */
  parentOf(node: VhdIdentity): VhdIdentity | undefined {
    const older = this.byUuid.get(node.uuid)?.find((other) => other.path !== node.path && other.name < node.name);
    if (older) return older; // interrupted merge: the older file holding this uuid is the merged disk
    if (!node.differencing || node.parentUuid === undefined) return undefined;
    const candidates = (this.byUuid.get(node.parentUuid) ?? []).filter((other) => other.path !== node.path);
    return candidates[candidates.length - 1];
  }

  /** The direct children of a node (differencing files naming its uuid). */
  childrenOf(node: VhdIdentity): VhdIdentity[] {
    return [...this.nodes.values()].filter((other) => other !== node && this.parentOf(other) === node);
  }

  /**
   * The remote paths of the chain ending at `path`, root (full disk) first.
   * @throws RepositoryError INCOMPLETE_BACKUP when the file is not in the folder, a parent is missing, or the parents loop
   */
  chainOf(path: string): string[] {
    const chain: VhdIdentity[] = [];
    let node = this.nodes.get(path);
    if (!node) throw new RepositoryError(RepositoryErrorReason.Incomplete, `${path} is missing or not a readable VHD`, { path });
    while (node) {
      if (chain.includes(node))
        throw new RepositoryError(RepositoryErrorReason.Incomplete, `the chain of ${path} loops at ${node.path}`, { path });
      chain.unshift(node);
      const parent = this.parentOf(node);
      if (!parent && node.differencing && !this.byUuid.get(node.uuid)?.some((other) => other.name < node!.name)) {
        throw new RepositoryError(
          RepositoryErrorReason.Incomplete,
          `broken chain: ${node.path} is a differencing VHD whose parent (VHD uuid ${node.parentUuid}) is not in its folder${node.path === path ? "" : ` (needed by ${path})`}; this backup cannot be restored`,
          { path, missingParentUuid: node.parentUuid },
        );
      }
      node = parent;
    }
    return chain.map((entry) => entry.path);
  }
}
