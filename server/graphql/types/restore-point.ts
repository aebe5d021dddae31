import { Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { DateTimeScalar, SafeIntScalar } from "./scalars.js";
import { ArchiveFormat, Compression, FileEntryType, IntegrityStatus, RestorePointKind, VerificationStatus } from "./enums.js";
import { connectionTypes } from "./connection.js";

@ObjectType({ description: "A disk of a restore point." })
export class RestorePointDisk {
  @Field(() => String, { description: "The VDI uuid at backup time." })
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => SafeIntScalar)
  virtualSize!: number;
}

@ObjectType({ description: "The last health check of a restore point." })
export class Verification {
  @Field(() => VerificationStatus)
  status!: VerificationStatus;

  @Field(() => DateTimeScalar, { nullable: true })
  checkedAt!: Date | null;

  @Field(() => String, { nullable: true })
  error!: string | null;
}

@ObjectType({ description: "One thing a verify found wrong in a restore point." })
export class IntegrityProblem {
  @Field(() => String, { description: "The file, as a path inside the remote (xo-vm-backups/<vm uuid>/...)." })
  file!: string;

  @Field(() => Int, { nullable: true, description: "The VHD block (index in the BAT) when the damage is in a data block." })
  block!: number | null;

  @Field(() => String, { description: "What is wrong, in words." })
  detail!: string;
}

@ObjectType({
  description:
    "The last verify of a restore point (verifyRestorePoint, or a VERIFY job): every file read end to end and checked against the checksums written with it.",
})
export class IntegrityVerdict {
  @Field(() => IntegrityStatus)
  status!: IntegrityStatus;

  @Field(() => DateTimeScalar, { nullable: true, description: "When the last verify ended (null: never verified)." })
  verifiedAt!: Date | null;

  @Field(() => [IntegrityProblem], { description: "What the last verify found wrong (the first 100); empty unless DAMAGED." })
  problems!: IntegrityProblem[];

  @Field(() => [String], { description: "What the last verify repaired, one sentence each (REPAIRED)." })
  repaired!: string[];
}

@ObjectType({ description: "Something a VM can be restored from: a backup on a remote, a snapshot, or a replica." })
export class RestorePoint {
  @Field(() => ID)
  id!: string;

  @Field(() => RestorePointKind)
  kind!: RestorePointKind;

  @Field(() => String)
  vmUuid!: string;

  @Field(() => String)
  vmName!: string;

  @Field(() => DateTimeScalar)
  timestamp!: Date;

  @Field(() => SafeIntScalar)
  sizeBytes!: number;

  @Field(() => String, { nullable: true, description: "The SR holding a snapshot or replica." })
  sr!: string | null;

  @Field(() => Boolean)
  quiesced!: boolean;

  @Field(() => Compression)
  compression!: Compression;

  @Field(() => Int, { description: "VHD files read to restore it (1 for a full)." })
  chainLength!: number;

  @Field(() => [RestorePointDisk])
  disks!: RestorePointDisk[];

  @Field(() => Verification)
  verification!: Verification;

  @Field(() => IntegrityVerdict, {
    description: "The last verify's verdict (remote restore points; a SNAPSHOT or REPLICA stays UNVERIFIED).",
  })
  integrity!: IntegrityVerdict;

  @Field(() => DateTimeScalar, { nullable: true, description: "When the last verify ended (integrity.verifiedAt)." })
  verifiedAt!: Date | null;

  @Field(() => DateTimeScalar, {
    nullable: true,
    description:
      "Until when the backup's files are immutable on its remote (the remote's immutability window, from the backup's metadata): nobody, Cairn included, can change or delete them before then, so retention keeps it and removeRestorePoint refuses it. Null: not immutable.",
  })
  immutableUntil!: Date | null;

  remoteId!: string | null;
  jobId!: string | null;
  scheduleId!: string | null;
  runId!: string | null;
}

export enum RestorePointRemovalAction {
  DELETE_FILES = "DELETE_FILES",
  MERGE_INTO_NEXT = "MERGE_INTO_NEXT",
  FILES_KEPT = "FILES_KEPT",
  DESTROY_ON_POOL = "DESTROY_ON_POOL",
  UNLIST_ONLY = "UNLIST_ONLY",
  UNKNOWN = "UNKNOWN",
}
registerEnumType(RestorePointRemovalAction, {
  name: "RestorePointRemovalAction",
  description:
    "What removeRestorePoint does to a restore point: DELETE_FILES (its files go: no other backup needs them), MERGE_INTO_NEXT (newer backups build on it: the next backup is merged into it so they still restore), FILES_KEPT (only its metadata goes: several VHDs branch from its own, or merges do not run on its remote), DESTROY_ON_POOL (a snapshot or replica destroyed with its disks), UNLIST_ONLY (what it stood for is already gone), UNKNOWN (its remote or pool cannot be read now).",
});

@ObjectType({ description: "A VHD merge a removal runs so that the backups built on the removed one still restore." })
export class RestorePointMerge {
  @Field(() => String, { description: "The disk, by name (its VDI uuid when it has none)." })
  disk!: string;

  @Field(() => String, { description: "The removed backup's VHD, as a path inside the remote." })
  parentPath!: string;

  @Field(() => String, { description: "The next backup's VHD, which ends up holding both (same path)." })
  childPath!: string;

  @Field(() => SafeIntScalar, { description: "Bytes the merge reads and writes, about: the next backup's VHD size." })
  estimatedBytes!: number;
}

@ObjectType({
  description:
    "What removeRestorePoint would do to this restore point, worked out now from the remote's VM folder (the chain as it really is) or from its pool, changing nothing. An estimate: the removal decides again under the VM folder's lock.",
})
export class RestorePointRemoval {
  @Field(() => RestorePointRemovalAction)
  action!: RestorePointRemovalAction;

  @Field(() => String, { description: "What happens, in one or two sentences for people (or why Cairn cannot tell)." })
  description!: string;

  @Field(() => String, {
    nullable: true,
    description:
      "Why removeRestorePoint would be refused now (a running replica, a pool not connected, unreadable files); null when it would go ahead.",
  })
  refusal!: string | null;

  @Field(() => [String], {
    description:
      "Files that disappear from the remote (paths inside it): the metadata first, then the files deleted and the VHDs merged into the next backup's.",
  })
  deletedFiles!: string[];

  @Field(() => SafeIntScalar, {
    nullable: true,
    description:
      "Bytes freed, about; null when merges make it unknown (they free only the blocks the next backup replaced) or for a snapshot or replica.",
  })
  freedBytes!: number | null;

  @Field(() => [RestorePointMerge])
  merges!: RestorePointMerge[];

  @Field(() => DateTimeScalar, { nullable: true, description: "The time of the next backup merged into it (MERGE_INTO_NEXT)." })
  nextBackupAt!: Date | null;

  @Field(() => RestorePoint, { nullable: true, description: "The restore point of that next backup, when it is indexed." })
  nextRestorePoint!: RestorePoint | null;

  @Field(() => Int, { description: "How many newer backups build on it; they still restore afterwards." })
  dependents!: number;

  @Field(() => String, { nullable: true, description: "The pool of a snapshot or replica, by name." })
  poolName!: string | null;
}

export const { Connection: RestorePointConnection } = connectionTypes(RestorePoint, "RestorePoint");

@InputType({ description: "Narrows the restore points listed; every field is optional." })
export class RestorePointFilter {
  @Field(() => String, { nullable: true }) vmUuid?: string | null;
  @Field(() => ID, { nullable: true }) remoteId?: string | null;
  @Field(() => ID, { nullable: true }) jobId?: string | null;
  @Field(() => RestorePointKind, { nullable: true }) kind?: RestorePointKind | null;
  @Field(() => DateTimeScalar, { nullable: true }) from?: Date | null;
  @Field(() => DateTimeScalar, { nullable: true }) to?: Date | null;
  @Field(() => IntegrityStatus, {
    nullable: true,
    description: "Only restore points whose last verify gave this verdict (UNVERIFIED: never verified).",
  })
  integrity?: IntegrityStatus | null;
}

@ObjectType({ description: "An entry of a file system inside a backed-up disk." })
export class FileEntry {
  @Field(() => String) name!: string;
  @Field(() => String) path!: string;
  @Field(() => FileEntryType) type!: FileEntryType;
  @Field(() => SafeIntScalar) size!: number;
  @Field(() => DateTimeScalar, { nullable: true }) modifiedAt!: Date | null;
}

@ObjectType({
  description:
    "A partition of a disk of a delta restore point, or the whole disk (number 0) when it has no partition table: what it holds and whether Cairn can browse it.",
})
export class DiskPartition {
  @Field(() => Int, {
    description: "As Linux numbers them (1 = first; MBR logicals from 5); 0 = the whole disk. The `partition` of browseRestorePoint.",
  })
  number!: number;

  @Field(() => String, { description: "The GPT partition name; empty for MBR and for the whole disk." })
  name!: string;

  @Field(() => SafeIntScalar, { description: "Bytes from the start of the disk." })
  offset!: number;

  @Field(() => SafeIntScalar, { description: "Size in bytes." })
  size!: number;

  @Field(() => String, { description: 'The MBR type byte in hex ("83", "0c"...) or the GPT type GUID; empty for the whole disk.' })
  type!: string;

  @Field(() => String, {
    nullable: true,
    description:
      'What it holds, as recognised: "ext2", "ext3", "ext4", "FAT12", "FAT16", "FAT32", "NTFS", "exFAT", "LVM", "LUKS", "swap"; null when nothing is.',
  })
  fileSystem!: string | null;

  @Field(() => Boolean, { description: "Whether it is the one browsed when browseRestorePoint's partition is null." })
  automatic!: boolean;

  @Field(() => String, { nullable: true, description: "Why Cairn cannot browse it, in words; null when it can." })
  reason!: string | null;
}

@InputType({ description: "Restore a VM from a restore point, as a new VM." })
export class RestoreInput {
  @Field(() => ID) restorePointId!: string;
  @Field(() => String, { description: "Target SR." }) srUuid!: string;
  @Field(() => ID, { nullable: true, description: "Target pool (default: the SR's pool)." }) poolId?: string | null;
  @Field(() => String, { nullable: true, description: "Name of the new VM (default: original name + restore date)." }) name?: string | null;
  @Field(() => Boolean, { nullable: true, defaultValue: false }) start?: boolean | null;
}

@InputType({ description: "Files and folders to download from a restore point's disk." })
export class FileRestoreInput {
  @Field(() => ID) restorePointId!: string;
  @Field(() => Int) disk!: number;
  @Field(() => Int, { nullable: true }) partition?: number | null;
  @Field(() => [String]) paths!: string[];
  @Field(() => ArchiveFormat, { nullable: true, defaultValue: ArchiveFormat.TAR_GZ }) format?: ArchiveFormat | null;
}

@ObjectType({ description: "A short-lived, single-use download link." })
export class FileDownload {
  @Field(() => String) url!: string;
  @Field(() => DateTimeScalar) expiresAt!: Date;
}
