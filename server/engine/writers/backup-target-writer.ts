/**
 * A backup remote as a {@link TargetWriter}: prepare = {@link beginBackup} (the VM folder locked), write = the XVA (FULL) or
 * one disk's VHD (DELTA), commit = the metadata (last; answers its path), abort = every file this backup wrote removed.
 */
import type { Readable } from "node:stream";

import type { Remote } from "../../remotes/remote.js";
import { beginBackup, type BackupWriter, type CommitInput } from "../../repository/backup-writer.js";
import type { BackupMode } from "../../repository/metadata.js";
import type { TargetWriter } from "./target-set.js";

/** What one transfer writes: the XVA, or the VHD of the disk whose source VDI is `vdiUuid`. */
export type BackupPart = { kind: "xva"; sizeHint: number } | { kind: "disk"; vdiUuid: string; sizeHint: number };

/** A remote and its name (engine/backup's BackupTarget, handed back to the caller as it was given). */
export interface RemoteTarget {
  name: string;
  remote: Remote;
}

export class BackupTargetWriter<Target extends RemoteTarget = RemoteTarget> implements TargetWriter<BackupPart, CommitInput, string> {
  private writer: BackupWriter | undefined;

  constructor(
    readonly target: Target,
    private readonly backup: { vmUuid: string; timestamp: Date | number; mode: BackupMode; jobId: string; runId: string },
  ) {}

  get name(): string {
    return this.target.name;
  }

  async prepare(signal: AbortSignal): Promise<void> {
    const { runId, ...options } = this.backup;
    this.writer = await beginBackup(this.target.remote, { ...options, lock: { owner: runId, signal } });
  }

  async write(part: BackupPart, stream: Readable, signal: AbortSignal): Promise<number> {
    const writer = this.opened();
    const written =
      part.kind === "xva"
        ? await writer.writeXva(stream, { signal, sizeHint: part.sizeHint })
        : await writer.writeDisk(part.vdiUuid, stream, { signal, sizeHint: part.sizeHint });
    return written.bytes;
  }

  /** @returns the metadata's path (to index the new restore point). */
  async commit(input: CommitInput): Promise<string> {
    const writer = this.opened();
    await writer.commit(input);
    return writer.metadataPath;
  }

  async abort(): Promise<string | undefined> {
    await this.writer?.abort();
    return undefined;
  }

  private opened(): BackupWriter {
    if (!this.writer) throw new Error(`the backup on ${this.target.name} was not opened`);
    return this.writer;
  }
}
