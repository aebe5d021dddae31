export * from "./layout.js";
export * from "./metadata.js";
export { LOCK_EXPIRY_MS, VmLock, type VmLockContent, type VmLockOptions, acquireVmLock, readLock } from "./lock.js";
export {
  BackupWriter,
  type BeginBackupOptions,
  type CommitInput,
  type WriteDataOptions,
  type WrittenFile,
  beginBackup,
} from "./backup-writer.js";
export {
  type ScanProblem,
  type ScanProblemKind,
  type ScanResult,
  type ScannedBackup,
  type ScannedDisk,
  scanRepository,
} from "./scanner.js";
export { type RetentionOptions, type RetentionResult, applyRetention, removeBackup } from "./retention.js";
export { type CleanOptions, type CleanResult, cleanRepository } from "./cleaner.js";
export type { MergeStepListener, MergedVhd } from "./unreferenced-files.js";
export { openBackupDisk } from "./chain-source.js";
export { type LocalPathRemote, localPathsOf } from "./local-path.js";
export { RepositoryError, RepositoryErrorReason } from "./repository-error.js";
export { type BackupVerdict, type IntegrityProblem, type VerifyOptions, type VerifyStatus, verifyBackup } from "./verify.js";
export { xvaReadStream } from "./xva-source.js";
export { type FileDigest, digestStream, verifyingStream } from "./file-digest.js";
export type { UnreadableFile } from "./vhd-lineage.js";
export { type LockClaim, LOCK_RENEW_MS, acquireVmLease, liveClaims, releaseClaimsOfOwner } from "./lock.js";
export type { VmLease, VmLeaseOptions } from "./lease.js";
