import { messageOf } from "../../errors.js";
import type { MergeStorage } from "./merge-storage.js";
import { VhdError } from "./vhd-error.js";

/** The small file that makes a merge resumable: where it stands, nothing proportional to the disk. */
export interface MergeState {
  version: 1;
  /** The paths as the merge's storage names them (remote paths; absolute local paths in files older versions wrote). */
  parent: string;
  child: string;
  parentUuid: string;
  childUuid: string;
  /** Offset of the parent's footer before the merge: appended blocks go from here, contiguously. */
  dataEnd: number;
  /** Offset of the parent's footer during and after the merge (dataEnd + new blocks × block stride). */
  footerAt: number;
  /** Position in the child's sorted allocated blocks up to which every block is merged. */
  nextBlock: number;
  step: "blocks" | "identity" | "renamed";
}

export async function readMergeState(storage: MergeStorage, path: string): Promise<MergeState | undefined> {
  const bytes = await storage.readFile(path);
  if (bytes === undefined) return undefined;
  const text = bytes.toString("utf8");
  try {
    const state = JSON.parse(text) as MergeState;
    if (
      state.version !== 1 ||
      typeof state.parent !== "string" ||
      typeof state.child !== "string" ||
      !["blocks", "identity", "renamed"].includes(state.step)
    ) {
      throw new Error("unexpected content");
    }
    return state;
  } catch (error) {
    throw new VhdError("VHD_MERGE_STATE", `the merge state file cannot be used: ${messageOf(error)}`, {
      file: path,
      structure: "merge state",
    });
  }
}

/** Replaces the state file atomically and durably: after a crash the state is the old one or the new one, never torn. */
export async function writeMergeState(storage: MergeStorage, path: string, state: MergeState): Promise<void> {
  await storage.writeFileDurably(path, JSON.stringify(state));
}

/** One durable step of a merge, as `mergeVhdChain` reports it to its listener (a throw there acts as a crash). */
export type MergeStep =
  | { kind: "planned"; blocks: number; newBlocks: number }
  | { kind: "footer-moved" }
  | { kind: "block-data"; index: number }
  | { kind: "block"; index: number; done: number; total: number }
  /** The merged file's block checksums are on disk beside the child's (`<childChecksums>.merging`). */
  | { kind: "checksums-written" }
  | { kind: "identity" }
  | { kind: "renamed" }
  /** The merged file's block checksums replaced the child's. */
  | { kind: "checksums-renamed" };
