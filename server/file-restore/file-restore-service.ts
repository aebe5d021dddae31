/**
 * File-level restore: `restorePointPartitions` lists the partitions of a disk of a delta restore point with what each
 * holds, `browseRestorePoint` lists a folder inside one, `restoreFiles` checks the chosen paths and issues a single-use
 * download link, and `GET /download/<token>` (server/http/download-route.ts) streams the archive through
 * {@link FileRestoreService.streamDownload}. Every read goes through the VHD chain on the remote; no disk is mounted or
 * copied.
 */
import type { Writable } from "node:stream";
import type { Db } from "../db/prisma.js";
import { CairnError, ErrorCode, InputError, notFound } from "../errors.js";
import { openRestorePointBackup, type OpenedBackup } from "../engine/restore-points/restore-point-backup.js";
import type { Logger } from "../log.js";
import type { StoredRemotes } from "../engine/stored-remotes.js";
import { validUuid } from "../domain/ids.js";
import type { Principal } from "../domain/principal.js";
import { writeArchive, type ArchiveFormat } from "./archive-writer.js";
import { listDiskPartitions, openDiskFileSystem, type DiskPartitionInfo, type OpenedFileSystem } from "./disk-file-systems.js";
import { DownloadTokens, type DownloadRequest } from "./download-tokens.js";
import { FsPathError, normaliseFsPath, type FsEntry } from "./file-system.js";

export interface FileRestoreInput {
  restorePointId: string;
  disk: number;
  partition?: number | null;
  paths: string[];
  format?: ArchiveFormat | null;
}

const MAX_PATHS = 1000;

export class FileRestoreService {
  readonly tokens: DownloadTokens;

  constructor(private readonly deps: { db: Db; remotes: StoredRemotes; log: Logger }) {
    this.tokens = new DownloadTokens(deps.db);
  }

  /**
   * @throws CairnError NOT_FOUND (restore point, path), BAD_USER_INPUT (not a delta backup, bad disk/partition/path,
   *   unsupported content with the reason per partition), UNAVAILABLE (remote)
   */
  async browse(id: string, disk: number, partition: number | null, path: string): Promise<FsEntry[]> {
    const folder = normaliseFsPath(path, "path");
    return this.withFileSystem(id, disk, partition, async ({ fs }) => {
      try {
        return await fs.list(folder);
      } catch (error) {
        throw pathError(error, "path");
      }
    });
  }

  /**
   * The partitions of a disk (or the whole disk, number 0, without a partition table), each with what it holds and why it
   * cannot be browsed when it cannot: what a person chooses `partition` from.
   * @throws CairnError NOT_FOUND (restore point), BAD_USER_INPUT (not a delta backup, bad disk, unreadable table), UNAVAILABLE
   */
  async partitions(id: string, disk: number): Promise<DiskPartitionInfo[]> {
    return this.withBackup(id, disk, null, (opened) => listDiskPartitions(opened.remote, opened.backup, disk));
  }

  /** Checks every path exists, then issues the link. `url` is relative to the server (`/download/<token>`). */
  async prepareDownload(input: FileRestoreInput, principal: Principal | undefined): Promise<{ url: string; expiresAt: Date }> {
    if (!Array.isArray(input.paths) || input.paths.length === 0) throw new InputError("input.paths", "give at least one file or folder");
    if (input.paths.length > MAX_PATHS)
      throw new InputError("input.paths", `at most ${MAX_PATHS} paths (got ${input.paths.length}); choose their folder instead`);
    const paths = [...new Set(input.paths.map((p, i) => normaliseFsPath(p, `input.paths.${i}`)))];
    const format: ArchiveFormat = input.format === "ZIP" ? "ZIP" : "TAR_GZ";
    const opened = await this.withFileSystem(input.restorePointId, input.disk, input.partition ?? null, async ({ fs, partition }) => {
      for (const [i, path] of paths.entries()) {
        try {
          await fs.lstat(path);
        } catch (error) {
          throw pathError(error, `input.paths.${i}`);
        }
      }
      return partition;
    });
    const request: DownloadRequest = {
      restorePointId: input.restorePointId,
      disk: input.disk,
      partition: opened,
      paths,
      format,
      userId: principal?.userId ?? null,
      username: principal?.username ?? null,
    };
    const { token, expiresAt } = await this.tokens.issue(request);
    return { url: `/download/${token}`, expiresAt };
  }

  /**
   * Streams the archive of a consumed token into `output`. `onReady` is called once the file system is open, before the first
   * byte (to send the headers); errors before that reject without touching `output`.
   */
  async streamDownload(
    request: DownloadRequest,
    output: Writable,
    onReady: (info: { fileName: string; contentType: string }) => void,
  ): Promise<void> {
    await this.withFileSystem(request.restorePointId, request.disk, request.partition, async ({ fs }, vmName) => {
      const extension = request.format === "ZIP" ? "zip" : "tar.gz";
      onReady({
        fileName: `${vmName.replace(/[^A-Za-z0-9._-]+/g, "_")}-disk${request.disk}-files.${extension}`,
        contentType: request.format === "ZIP" ? "application/zip" : "application/gzip",
      });
      const result = await writeArchive(fs, request.paths, request.format, output);
      this.deps.log.info({ restorePointId: request.restorePointId, user: request.username, ...result }, "file-level restore downloaded");
    });
  }

  private async withFileSystem<T>(
    id: string,
    disk: number,
    partition: number | null,
    work: (opened: OpenedFileSystem, vmName: string) => Promise<T>,
  ): Promise<T> {
    return this.withBackup(id, disk, partition, async (opened, vmName) => {
      const fileSystem = await openDiskFileSystem(opened.remote, opened.backup, disk, partition);
      try {
        return await work(fileSystem, vmName);
      } finally {
        await fileSystem.close().catch((error: unknown) => this.deps.log.warn({ err: error }, "closing a backed-up file system failed"));
      }
    });
  }

  /** Checks the point, the disk and the partition as given, then opens the backup behind the point for `work`. */
  private async withBackup<T>(
    id: string,
    disk: number,
    partition: number | null,
    work: (opened: OpenedBackup, vmName: string) => Promise<T>,
  ): Promise<T> {
    const point = await this.deps.db.restorePoint.findUnique({ where: { id: validUuid(id, "restore point") } });
    if (!point) throw notFound("restore point", id);
    if (point.kind !== "VHD_CHAIN") {
      throw new CairnError(
        ErrorCode.BadInput,
        `File-level restore needs a delta (VHD) backup; restore point ${point.id} is ${point.kind === "XVA" ? "a full backup (XVA)" : `a ${point.kind}`}: restore the VM instead, or use a DELTA job.`,
        { field: "id" },
      );
    }
    if (!Number.isInteger(disk) || disk < 0) throw new InputError("disk", `must be a disk index (0 for the first disk); got ${disk}`);
    if (partition !== null && (!Number.isInteger(partition) || partition < 0))
      throw new InputError("partition", `must be a partition number (1 for the first, 0 for the whole disk) or null; got ${partition}`);
    // A person is waiting on the other end: a short wait for a running retention, then a CONFLICT saying so.
    const opened = await openRestorePointBackup(this.deps, point, { lease: { waitMs: FILE_RESTORE_LEASE_WAIT_MS } });
    try {
      return await work(opened, point.vmName);
    } finally {
      await opened.close();
    }
  }
}

/** How long a browse or download waits for a retention or merge of the same VM to finish. */
const FILE_RESTORE_LEASE_WAIT_MS = 20_000;

function pathError(error: unknown, field: string): unknown {
  if (error instanceof FsPathError) {
    return error.reason === "NOT_FOUND"
      ? new CairnError(ErrorCode.NotFound, `${field}: ${error.message}`, { field })
      : new InputError(field, error.message);
  }
  return error;
}
