/**
 * The restore lease of a VM folder (kind `r` claims: restore, file-level restore, health check, verify, mirror reads):
 * shared with other leases and with a backup writer, excluded by a maintenance lock (retention, merge, clean, removal).
 * The protocol is in `lock-claims.ts`; FORMAT.md, "Locking", says why it is safe.
 */
import type { Remote } from "../remotes/remote.js";
import { type ClaimOptions, HeldClaim, LEASE_WAIT_MS, acquireClaim } from "./lock-claims.js";

/** Options of {@link acquireVmLease}. */
export interface VmLeaseOptions extends ClaimOptions {
  /** How long to wait for a maintenance lock to go away. @default {@link LEASE_WAIT_MS} (30 min) */
  waitMs?: number;
}

/**
 * A restore lease of one VM folder, held from {@link acquireVmLease} until {@link release}: while it is held no
 * retention, merge, clean or removal changes the folder. It renews itself like a lock; {@link assertHeld} throws and
 * {@link signal} aborts once it is lost (a long read should stop: a maintenance run may then start).
 */
export class VmLease extends HeldClaim {}

/**
 * Takes a restore lease of a VM folder for `purpose` ("restore of …", "health check of …"). Wins iff no live maintenance
 * lock exists (a live old-format lock file counts as one unless its purpose is a backup); otherwise waits, calling
 * `onWait` with who holds the folder, and retries until `waitMs`.
 * @throws RepositoryError LOCKED when a maintenance lock stays for `waitMs`
 * @throws the signal's reason when `signal` aborts the wait
 */
export async function acquireVmLease(remote: Remote, vmUuid: string, purpose: string, options: VmLeaseOptions = {}): Promise<VmLease> {
  return acquireClaim(remote, vmUuid, purpose, "r", false, options, LEASE_WAIT_MS, (...args) => new VmLease(...args));
}
