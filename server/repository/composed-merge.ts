/**
 * VHD merges on a remote whose files cannot be changed, only replaced (S3): the merged file is composed server-side as a
 * new object under the child's path, from copies of the parent's unchanged ranges and uploaded bytes for what changes
 * (the child's blocks, a few BAT sectors, the footers). The cost is proportional to the child, not to the disk.
 * The layout, the state file and the order of the writes are in FORMAT.md, "Merge on S3".
 */
import {
  DiskType,
  type MergeStep,
  type VhdBlockChecksums,
  VhdError,
  type VhdFile,
  decodeBlockChecksums,
  encodeBlockChecksums,
} from "../formats/vhd/index.js";
import { checkChecksumsDescribe } from "../formats/vhd/checksum-match.js";
import { type ComposedMergePlan, type MergeSegment, composedMergeTable, planComposedMerge } from "../formats/vhd/merge-plan.js";
import type { RandomAccessFile, Remote } from "../remotes/remote.js";
import {
  type ComposableRemote,
  type ComposePart,
  S3_MAX_PARTS,
  S3_MAX_PART_SIZE,
  S3_MIN_PART_SIZE,
  canCompose,
} from "../remotes/s3-compose.js";
import { openRemoteVhd } from "./remote-vhd.js";
import { isNotFound } from "./repository-error.js";

/** The state file of a merge by composition (`<child>.merge.json`). */
interface ComposeState {
  version: 1;
  /** Tells it from the in-place merge's state file, which has no `method`. */
  method: "compose";
  /** Remote paths. */
  parent: string;
  child: string;
  parentUuid: string;
  childUuid: string;
  /** The multipart upload under way, if any: a restart aborts it before composing again. */
  uploadId?: string;
}

export interface ComposedMergeOptions {
  /** The older VHD (a remote path). It is deleted once the child's path holds the merged disk. */
  parent: string;
  /** The newer, differencing VHD: its path ends up holding the merged disk, with its uuid. */
  child: string;
  /** The parent's `.blocksums`: verifies the parent's blocks combined, gives the merged table's other entries. */
  parentChecksums?: string;
  /** The child's `.blocksums`: verifies the child's blocks; afterwards the merged file's table, if both tables were there. */
  childChecksums?: string;
  /** Checked between blocks and parts: an abort stops the merge as a crash would (resumable). */
  signal?: AbortSignal;
  /** Called after each step; what it throws stops the merge exactly as a crash there would. */
  onStep?: (step: MergeStep) => void | Promise<void>;
}

/** Whether merges on `remote` run by composing the merged file server-side (S3). */
export function canMergeByComposition(remote: Remote): boolean {
  return canCompose(remote);
}

/**
 * Merges `parent` into its child `child` on a remote that composes objects (see the file's comment). Called again with
 * the same arguments after a crash at any point (the state file `<child>.merge.json` says one is under way), it
 * finishes: an upload left open is aborted and the composition done again (the child's path still holds the child until
 * the composed object replaces it at once), or, when the child's path already holds the merged disk, only the last
 * steps are done. At every moment every chain of the folder reads the same disk, and no `.blocksums` describes a file
 * that has changed.
 * @throws VhdError VHD_PARENT_MISMATCH, VHD_UNSUPPORTED, VHD_MERGE_STATE (a state file of another merge, or of an
 *   in-place merge), VHD_CHECKSUM_MISMATCH (a block that does not match its table: nothing is replaced), RemoteError,
 *   the signal's reason, and what `onStep` throws
 */
export async function mergeByComposition(
  remote: Remote,
  options: ComposedMergeOptions,
): Promise<{ mergedBlocks: number; resumed: boolean; checksumsWritten: boolean }> {
  if (!canCompose(remote)) throw new Error(`mergeByComposition: ${remote.name} cannot compose objects (a bug of the caller)`);
  const statePath = `${options.child}.merge.json`;
  const onStep = options.onStep ?? (() => {});
  options.signal?.throwIfAborted();
  const previous = await readState(remote, statePath, options);
  if (previous?.uploadId !== undefined) await remote.abortComposition(options.child, previous.uploadId);
  let mergedBlocks = 0;
  if (!previous || !(await holdsMergedDisk(remote, previous))) {
    mergedBlocks = await compose(remote, options, previous, statePath, onStep);
  }
  const state = previous ?? (await readState(remote, statePath, options));
  if (!state) throw new Error(`mergeByComposition: the state file ${statePath} vanished during the merge`);
  const checksumsWritten = await finish(remote, options, state, statePath, onStep);
  return { mergedBlocks, resumed: previous !== undefined, checksumsWritten };
}

async function readState(remote: Remote, statePath: string, options: ComposedMergeOptions): Promise<ComposeState | undefined> {
  let text: string;
  try {
    text = (await remote.readFile(statePath)).toString("utf8");
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  const where = { file: statePath, structure: "merge state" };
  let state: Partial<ComposeState>;
  try {
    state = JSON.parse(text) as Partial<ComposeState>;
  } catch {
    throw new VhdError("VHD_MERGE_STATE", "the merge state file is not JSON: it cannot be resumed", where);
  }
  if (state.method !== "compose") {
    throw new VhdError("VHD_MERGE_STATE", "the state file records an in-place merge, which resumes only where files can be changed", where);
  }
  if (state.parent !== options.parent || state.child !== options.child) {
    throw new VhdError("VHD_MERGE_STATE", `the state file belongs to a merge of ${state.child} into ${state.parent}`, where);
  }
  if (typeof state.parentUuid !== "string" || typeof state.childUuid !== "string") {
    throw new VhdError("VHD_MERGE_STATE", "the state file names no uuids", where);
  }
  return state as ComposeState;
}

/**
 * Whether the child's path already holds the merged disk (the composed object replaced the child): it carries the
 * child's uuid and is no longer a differencing disk on top of the parent.
 */
async function holdsMergedDisk(remote: Remote, state: ComposeState): Promise<boolean> {
  const file = await openRemoteVhd(remote, state.child);
  try {
    if (file.footer.uuid !== state.childUuid) {
      throw new VhdError("VHD_MERGE_STATE", `${state.child} carries uuid ${file.footer.uuid}, neither the child's nor the merged disk's`, {
        file: state.child,
        structure: "footer",
      });
    }
    return file.header?.parentUuid !== state.parentUuid || file.diskType !== DiskType.Differencing;
  } finally {
    await file.close();
  }
}

async function readTable(remote: Remote, path: string | undefined): Promise<VhdBlockChecksums | undefined> {
  if (path === undefined) return undefined;
  try {
    return decodeBlockChecksums(await remote.readFile(path), { file: path });
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** Composes the merged disk over the child's path; returns the child blocks merged. */
async function compose(
  remote: ComposableRemote,
  options: ComposedMergeOptions,
  previous: ComposeState | undefined,
  statePath: string,
  onStep: NonNullable<ComposedMergeOptions["onStep"]>,
): Promise<number> {
  const mergingPath = options.childChecksums && `${options.childChecksums}.merging`;
  const parentTable = await readTable(remote, options.parentChecksums);
  const childTable = await readTable(remote, options.childChecksums);
  let earlier: VhdBlockChecksums | undefined;
  if (previous && mergingPath) {
    // Written by an interrupted attempt of this very merge: the blocks made now must be the ones it made.
    earlier = await readTable(remote, mergingPath).catch(() => undefined);
    if (earlier?.vhdUuid !== previous.childUuid) earlier = undefined;
  } else if (mergingPath) {
    // A merged table left by an abandoned merge of this child must never be taken for this one's.
    await remote.delete(mergingPath);
  }
  const parent = await openRemoteVhd(remote, options.parent);
  let child: VhdFile | undefined;
  let parentBytes: RandomAccessFile | undefined;
  try {
    child = await openRemoteVhd(remote, options.child, childTable);
    if (previous && (parent.footer.uuid !== previous.parentUuid || child.footer.uuid !== previous.childUuid)) {
      throw new VhdError("VHD_MERGE_STATE", `the state file records other uuids than ${options.parent} and ${options.child} carry`, {
        file: statePath,
        structure: "merge state",
      });
    }
    const plan = planComposedMerge(parent, child, {
      parentTable,
      expected: earlier,
      onBlock: async (progress) => {
        options.signal?.throwIfAborted();
        await onStep({ kind: "block", ...progress });
      },
    });
    const state: ComposeState = previous ?? {
      version: 1,
      method: "compose",
      parent: options.parent,
      child: options.child,
      parentUuid: plan.parentUuid,
      childUuid: plan.childUuid,
    };
    delete state.uploadId; // aborted above
    if (!previous) {
      await remote.writeFile(statePath, JSON.stringify(state));
      await onStep({ kind: "planned", blocks: plan.childBlocks.length, newBlocks: plan.newBlocks });
    }
    parentBytes = await remote.openRandomAccess(options.parent);
    const source = parentBytes;
    await remote.composeObject(options.child, composeParts(plan, options.parent, source, options.signal), {
      signal: options.signal,
      onUploadStarted: async (uploadId) => {
        await remote.writeFile(statePath, JSON.stringify({ ...state, uploadId }));
      },
      beforeComplete: async () => {
        if (parentTable && options.childChecksums && mergingPath) {
          await remote.writeFile(mergingPath, encodeBlockChecksums(composedMergeTable(plan, parentTable)));
          await onStep({ kind: "checksums-written" });
        }
        // The child is about to change: its table must not outlive it (the merged one, if any, is in `.merging`).
        if (options.childChecksums) await remote.delete(options.childChecksums);
        options.signal?.throwIfAborted();
      },
    });
    await onStep({ kind: "identity" });
    return plan.childBlocks.length;
  } finally {
    await parentBytes?.close();
    await child?.close();
    await parent.close();
  }
}

/** The last steps, each skipped when done: merged table in place, parent's table and parent deleted, state deleted. */
async function finish(
  remote: Remote,
  options: ComposedMergeOptions,
  state: ComposeState,
  statePath: string,
  onStep: NonNullable<ComposedMergeOptions["onStep"]>,
): Promise<boolean> {
  const mergingPath = options.childChecksums && `${options.childChecksums}.merging`;
  let written = false;
  if (options.childChecksums && mergingPath) {
    const table = await readTable(remote, mergingPath);
    if (table) {
      const merged = await openRemoteVhd(remote, options.child);
      try {
        checkChecksumsDescribe(merged, table, { uuid: state.childUuid });
      } finally {
        await merged.close();
      }
      await remote.writeFile(options.childChecksums, encodeBlockChecksums(table));
      await onStep({ kind: "checksums-renamed" });
      await remote.delete(mergingPath);
      written = true;
    } else {
      written = (await readTable(remote, options.childChecksums)) !== undefined;
    }
  }
  if (options.parentChecksums) await remote.delete(options.parentChecksums);
  await remote.delete(options.parent);
  await onStep({ kind: "renamed" });
  await remote.delete(statePath);
  return written;
}

/** How the merged file is cut into S3 parts: server-side copies of long unchanged ranges, uploads of the rest. */
export type PartLayout =
  | { kind: "copy"; start: number; end: number }
  | {
      kind: "upload";
      length: number;
      pieces: Array<{ kind: "parent"; start: number; end: number } | Extract<MergeSegment, { kind: "new" }>>;
    };

/**
 * Cuts the segments into parts that S3 accepts: every part but the last holds at least `minPart` bytes (5 MiB or more),
 * copies at most 5 GiB. A parent range too short to be a part of its own is read and uploaded with its neighbours, and
 * an upload short of `minPart` takes the first bytes of the next parent range, so the bytes uploaded are the new bytes
 * plus at most about 2 × `minPart` per changed region.
 */
export function layoutParts(segments: readonly MergeSegment[], minPart: number): PartLayout[] {
  const parts: PartLayout[] = [];
  let pending: Extract<PartLayout, { kind: "upload" }> = { kind: "upload", length: 0, pieces: [] };
  const flush = () => {
    if (pending.length > 0) parts.push(pending);
    pending = { kind: "upload", length: 0, pieces: [] };
  };
  const read = (start: number, end: number) => {
    pending.pieces.push({ kind: "parent", start, end });
    pending.length += end - start;
  };
  for (const segment of segments) {
    if (segment.kind === "new") {
      pending.pieces.push(segment);
      pending.length += segment.length;
      if (pending.length >= minPart) flush();
      continue;
    }
    let start = segment.start;
    const end = segment.end;
    if (pending.length > 0) {
      const needed = minPart - pending.length;
      if (end - start - needed < minPart) {
        read(start, end); // the rest would be too short to copy: upload it all
        if (pending.length >= minPart) flush();
        continue;
      }
      read(start, start + needed);
      start += needed;
      flush();
    }
    if (end - start < minPart) {
      read(start, end);
      if (pending.length >= minPart) flush();
      continue;
    }
    const count = Math.ceil((end - start) / S3_MAX_PART_SIZE);
    for (let k = 0; k < count; k++) {
      const from = start + Math.floor(((end - start) * k) / count);
      const to = start + Math.floor(((end - start) * (k + 1)) / count);
      parts.push({ kind: "copy", start: from, end: to });
    }
  }
  flush();
  return parts;
}

/** The layout with the smallest part size (from 5 MiB, doubling) that keeps the object within S3's 10 000 parts. */
export function chooseLayout(segments: readonly MergeSegment[]): PartLayout[] {
  for (let minPart = S3_MIN_PART_SIZE; ; minPart *= 2) {
    const parts = layoutParts(segments, minPart);
    if (parts.length <= S3_MAX_PARTS) return parts;
  }
}

/** The parts of the merged object, made one at a time as the upload asks for them. */
async function* composeParts(
  plan: ComposedMergePlan,
  parentPath: string,
  parentBytes: RandomAccessFile,
  signal: AbortSignal | undefined,
): AsyncGenerator<ComposePart> {
  for (const part of chooseLayout(plan.segments)) {
    signal?.throwIfAborted();
    if (part.kind === "copy") {
      yield { kind: "copy", from: parentPath, start: part.start, end: part.end - 1 };
      continue;
    }
    const pieces: Buffer[] = [];
    for (const piece of part.pieces) {
      pieces.push(piece.kind === "parent" ? await parentBytes.read(piece.start, piece.end - piece.start) : await piece.bytes());
    }
    yield { kind: "bytes", data: Buffer.concat(pieces, part.length) };
  }
}
