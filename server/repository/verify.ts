import { VhdChain, type VhdFile, repairVhdFooter, verifyVhdFile } from "../formats/vhd/index.js";
import { readXva } from "../formats/xva/index.js";
import type { Remote } from "../remotes/remote.js";
import { openRemoteVhd, readBlockChecksums } from "./remote-vhd.js";
import { digestStream } from "./file-digest.js";
import { blockChecksumsPathOf, resolveInVmDir } from "./layout.js";
import { type VmLeaseOptions, acquireVmLease } from "./lock.js";
import { localPathsOf } from "./local-path.js";
import { scanVmFolder } from "./scanner.js";
import { messageOf } from "../errors.js";

/** One thing found wrong. `block` is the VHD block index when the damage is in a data block. */
export interface IntegrityProblem {
  file: string;
  block?: number;
  detail: string;
  /** A verify with `repair` can fix it (a damaged VHD footer whose other copy is intact, on a LOCAL remote). */
  repairable?: boolean;
}

export type VerifyStatus = "OK" | "DAMAGED" | "REPAIRED";

/** A restore point's verdict. */
export interface BackupVerdict {
  status: VerifyStatus;
  /** Files read end to end (the metadata, the XVA or every VHD of every chain). */
  checkedFiles: string[];
  checkedBytes: number;
  problems: IntegrityProblem[];
  /** What was repaired (a VHD footer rewritten from its copy), one sentence each. */
  repaired: string[];
  /** Files that carry no checksums (written before Cairn recorded them): only their structure could be checked. */
  unverifiable: string[];
}

export interface VerifyOptions {
  /** Rewrite what can be rewritten safely (a damaged VHD footer from its copy at offset 0; LOCAL remotes only). */
  repair?: boolean;
  signal?: AbortSignal;
  /** Bytes read so far, of about `total`. */
  onProgress?: (done: number, total: number) => void;
  /** The restore lease's options (owner: the run id; waiting while retention holds the VM). */
  lease?: VmLeaseOptions;
}

/**
 * Reads one restore point end to end, without touching a pool, and checks everything that was recorded when it was
 * written: the metadata's own seal; for a full backup the XVA's SHA-256 and size and every chunk checksum inside it; for a
 * delta backup every VHD of every chain (footers, header, BAT, each block against its block checksum, the links between
 * parent and child). Holds a restore lease on the VM folder meanwhile, so no merge rewrites what it reads.
 * A backup that is gone or incomplete is DAMAGED with the reason; nothing here throws for damage.
 */
export async function verifyBackup(
  remote: Remote,
  backup: { vmUuid: string; metadataPath: string },
  options: VerifyOptions = {},
): Promise<BackupVerdict> {
  const lease = await acquireVmLease(remote, backup.vmUuid, `verify of ${backup.metadataPath}`, {
    ...options.lease,
    signal: options.signal,
  });
  try {
    const signal = options.signal ? AbortSignal.any([options.signal, lease.signal]) : lease.signal;
    return await verifyUnderLease(remote, backup, { ...options, signal });
  } finally {
    await lease.release();
  }
}

async function verifyUnderLease(
  remote: Remote,
  backup: { vmUuid: string; metadataPath: string },
  options: VerifyOptions & { signal: AbortSignal },
): Promise<BackupVerdict> {
  const verdict: BackupVerdict = { status: "OK", checkedFiles: [], checkedBytes: 0, problems: [], repaired: [], unverifiable: [] };
  const finish = () =>
    ({ ...verdict, status: verdict.problems.length > 0 ? "DAMAGED" : verdict.repaired.length > 0 ? "REPAIRED" : "OK" }) as BackupVerdict;
  // The scan reads and checks the metadata (its seal included): no second read of it here.
  const scan = await scanVmFolder(remote, backup.vmUuid);
  const entry = scan.entries.find((candidate) => candidate.path === backup.metadataPath);
  if (!entry?.backup) {
    for (const file of scan.unreadable) verdict.problems.push({ file: file.path, detail: file.reason });
    if (!scan.unreadable.some((file) => file.path === backup.metadataPath)) {
      verdict.problems.push({ file: backup.metadataPath, detail: entry?.error ?? "the backup is no longer on the remote" });
    }
    return finish();
  }
  verdict.checkedFiles.push(backup.metadataPath);
  const found = entry.backup;
  if (found.mode === "full") {
    await verifyXva(remote, found.xvaPath as string, found.xvaDigest, verdict, options);
    return finish();
  }
  const integrity = found.metadata.cairn?.integrity?.files ?? {};
  const total = await chainBytes(
    remote,
    found.disks.flatMap((disk) => disk.chain),
  );
  for (const disk of found.disks) {
    // Each file is opened once: checked block by block, then kept open for the check of how the chain hangs together.
    const opened: VhdFile[] = [];
    try {
      for (const [i, path] of disk.chain.entries()) {
        options.signal.throwIfAborted();
        const ownVhd =
          i === disk.chain.length - 1
            ? Object.entries(found.metadata.vhds ?? {}).find(([, relative]) => resolveInVmDir(found.vmUuid, relative) === path)?.[1]
            : undefined;
        const expectsChecksums = ownVhd !== undefined && integrity[ownVhd]?.blockChecksums === true;
        const file = await verifyVhd(remote, path, disk.checksums[i], expectsChecksums, verdict, { ...options, total });
        if (file) opened.push(file);
      }
      if (opened.length === disk.chain.length && verdict.problems.length === 0) await verifyLinks(opened.splice(0), verdict);
    } finally {
      await Promise.all(opened.map((file) => file.close()));
    }
  }
  return finish();
}

async function verifyXva(
  remote: Remote,
  path: string,
  digest: { sha256: string; size: number } | undefined,
  verdict: BackupVerdict,
  options: VerifyOptions & { signal: AbortSignal },
): Promise<void> {
  try {
    const { size } = await remote.stat(path);
    const body = await remote.createReadStream(path);
    const hashed = digestStream(body);
    let done = 0;
    hashed.stream.on("data", (chunk: Buffer) => {
      done += chunk.length;
      options.onProgress?.(done, size);
    });
    const abort = () => hashed.stream.destroy(options.signal.reason as Error);
    options.signal.addEventListener("abort", abort, { once: true });
    try {
      for await (const item of readXva(hashed.stream, path)) void item; // every chunk's own checksum is checked by the reader
    } finally {
      options.signal.removeEventListener("abort", abort);
    }
    const actual = await hashed.digest;
    verdict.checkedFiles.push(path);
    verdict.checkedBytes += actual.size;
    if (!digest)
      verdict.unverifiable.push(
        `${path}: no whole-file checksum was recorded (written before Cairn 0.2); its chunk checksums were checked`,
      );
    else if (actual.size !== digest.size || actual.sha256 !== digest.sha256) {
      verdict.problems.push({
        file: path,
        detail: `its bytes differ from those written: SHA-256 ${actual.sha256} (${actual.size} bytes), recorded ${digest.sha256} (${digest.size} bytes)`,
      });
    }
  } catch (error) {
    options.signal.throwIfAborted();
    verdict.problems.push({ file: path, detail: messageOf(error) });
  }
}

async function verifyVhd(
  remote: Remote,
  path: string,
  sumsPath: string | undefined,
  expectsChecksums: boolean,
  verdict: BackupVerdict,
  options: VerifyOptions & { signal: AbortSignal; total: number },
): Promise<VhdFile | undefined> {
  let checksums;
  if (sumsPath === undefined) {
    if (expectsChecksums)
      verdict.problems.push({
        file: blockChecksumsPathOf(path),
        detail: "the block checksums written with this VHD are missing, so its blocks cannot be checked",
      });
    else
      verdict.unverifiable.push(
        `${path}: no block checksums (written before Cairn 0.2, or merged with such a file); its structure was checked`,
      );
  } else {
    try {
      checksums = await readBlockChecksums(remote, sumsPath);
    } catch (error) {
      verdict.problems.push({ file: sumsPath, detail: messageOf(error) });
    }
  }
  const local = localPathsOf(remote);
  let file: VhdFile;
  try {
    file = await openRemoteVhd(remote, path, checksums);
  } catch (error) {
    verdict.problems.push({ file: path, detail: messageOf(error) });
    return undefined;
  }
  try {
    if (file.footerDamaged) {
      if (options.repair && local) {
        const { repaired } = await repairVhdFooter(local(path));
        verdict.repaired.push(
          `${path}: its ${repaired === "copy" ? "footer copy at offset 0" : "trailing footer"} was damaged and was rewritten from the other copy`,
        );
      } else {
        verdict.problems.push({
          file: path,
          repairable: local !== undefined,
          detail: `its ${file.footerDamaged === "copy" ? "footer copy at offset 0" : "trailing footer"} is damaged (the other copy is intact, so it still reads); ${local ? "run a verify with repair to rewrite it" : "this kind of remote cannot rewrite part of a file, so it stays"}`,
        });
      }
    }
    const base = verdict.checkedBytes;
    const outcome = await verifyVhdFile(file, {
      signal: options.signal,
      onProgress: (done) => options.onProgress?.(base + done * file.blockSize, options.total),
    });
    for (const damage of outcome.damaged)
      verdict.problems.push({
        file: path,
        block: damage.block,
        detail: `block ${damage.block} at byte ${damage.offset}: ${damage.reason}`,
      });
    verdict.checkedFiles.push(path);
    verdict.checkedBytes += file.size;
    return file;
  } catch (error) {
    await file.close();
    options.signal.throwIfAborted();
    verdict.problems.push({ file: path, detail: messageOf(error) });
    return undefined;
  }
}

/** Each child names its parent's uuid: the files, already open and checked, are handed to the chain view (which closes them). */
async function verifyLinks(files: VhdFile[], verdict: BackupVerdict): Promise<void> {
  try {
    await (await VhdChain.openWith(files.map((file) => async () => file))).close();
  } catch (error) {
    verdict.problems.push({ file: files[files.length - 1].path, detail: messageOf(error) });
  }
}

async function chainBytes(remote: Remote, paths: string[]): Promise<number> {
  let total = 0;
  for (const path of new Set(paths))
    total += await remote.stat(path).then(
      (stat) => stat.size,
      () => 0,
    );
  return total;
}
