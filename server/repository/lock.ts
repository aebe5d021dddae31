/**
 * The exclusive lock of a VM folder (kind `x` claims: backup writer, retention, cleaner, removal). The protocol, shared
 * with the restore lease (`lease.ts`), is in `lock-claims.ts`; FORMAT.md, "Locking", says why it is safe.
 */
import type { Remote } from "../remotes/remote.js";
import { type ClaimOptions, HeldClaim, acquireClaim } from "./lock-claims.js";

export {
  type ClaimKind,
  type ClaimOptions,
  LEASE_WAIT_MS,
  LEGACY_LOCK_EXPIRY_MS,
  LOCKS_DIR,
  LOCK_EXPIRY_MS,
  LOCK_RENEW_MS,
  type LockClaim,
  type LockClaimContent,
  type ReleaseClaimsOptions,
  type VmLockContent,
  claimPath,
  claimsDir,
  conflicts,
  describeClaim,
  liveClaims,
  processHolder,
  processOwner,
  readLock,
  releaseClaimsOfOwner,
} from "./lock-claims.js";
export { VmLease, type VmLeaseOptions, acquireVmLease } from "./lease.js";

/** Options of {@link acquireVmLock}. */
export interface VmLockOptions extends ClaimOptions {
  /**
   * Retention, merge, clean, removal: the holder deletes or rewrites backups, so restore leases are excluded too (a
   * backup writer only adds files, and leases coexist with it). @default false
   */
  maintenance?: boolean;
  /**
   * How long to keep retrying while the folder is held. @default 0: fail at once (after up to 3 quick attempts when the
   * claim in the way may be a contender that withdraws too)
   */
  waitMs?: number;
}

/**
 * The exclusive lock of one VM folder, held from {@link acquireVmLock} until {@link release}. It renews itself every
 * `renewMs`; {@link assertHeld} (no I/O) throws once it is lost or may be, and {@link signal} aborts at that moment.
 */
export class VmLock extends HeldClaim {}

/**
 * Takes the exclusive lock of a VM folder for `purpose` ("backup 20250131T220003Z of job …", "retention of job …").
 * Wins iff no other live exclusive claim exists and, with `maintenance`, no live restore lease either; a live
 * old-format lock file (`<vm>.cairn.lock`) counts as an exclusive claim.
 * @throws RepositoryError LOCKED when the folder stays held for `waitMs`; the message names who holds it, for what, and
 *   since when (remote time)
 * @throws the signal's reason when `signal` aborts the wait
 */
export async function acquireVmLock(remote: Remote, vmUuid: string, purpose: string, options: VmLockOptions = {}): Promise<VmLock> {
  return acquireClaim(remote, vmUuid, purpose, "x", options.maintenance ?? false, options, 0, (...args) => new VmLock(...args));
}
