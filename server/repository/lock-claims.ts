/**
 * The claims protocol behind the VM folder lock (`lock.ts`) and the restore lease (`lease.ts`). See FORMAT.md, "Locking".
 *
 * A claim is a small JSON file `xo-vm-backups/.cairn-locks/<vm uuid>/<kind>-<token>.json`: kind `x` (exclusive) or `r`
 * (shared restore lease). A contender writes its claim, then lists the folder, and wins iff no other live claim conflicts
 * with it; otherwise it deletes its claim and retries. Remotes have no exclusive create, but every kind lists strongly
 * consistently after a write: of two conflicting contenders that each wrote before listing, at least one sees the other,
 * so both may lose but both never win.
 *
 * Time is the remote's: a claim's age is (the mtime of a file the judge has just written) − (the claim's mtime), both
 * from `remote.stat`, so the clocks of the hosts never matter. The holder renews (rewrites) its claim every `renewMs`; a
 * claim not renewed for its `expiryMs` is stale: ignored, and deleted by the next contender. A holder stops on its own
 * monotonic clock once `expiryMs - expiryMs / 3` has passed since the start of its last successful renewal, so it has
 * stopped before anyone may judge its claim stale.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleepFor } from "node:timers/promises";
import { isTemporaryName, temporaryPathFor } from "../remotes/remote-path.js";
import type { Remote } from "../remotes/remote.js";
import { VM_BACKUPS_DIR, checkSegment, vmLockPath } from "./layout.js";
import { RepositoryError, RepositoryErrorReason, isNotFound } from "./repository-error.js";
import { messageOf } from "../errors.js";

/** A claim not renewed for this long (by the remote's clock) is stale. */
export const LOCK_EXPIRY_MS = 3 * 60 * 1000;

/** A holder rewrites its claim this often. */
export const LOCK_RENEW_MS = 30 * 1000;

/** How long {@link acquireVmLease} waits by default for a maintenance lock to go away. */
export const LEASE_WAIT_MS = 30 * 60 * 1000;

/** How long an old-format lock file (`<vm>.cairn.lock`) lasted without a refresh, and an unreadable claim counts. */
export const LEGACY_LOCK_EXPIRY_MS = 10 * 60 * 1000;

/** The folder of every VM's claims: a dot-folder, which XO's and Cairn's VM listings skip. */
export const LOCKS_DIR = `${VM_BACKUPS_DIR}/.cairn-locks`;

/** `x`: exclusive (backup writer, retention, cleaner, removal). `r`: shared restore lease (restore, verify, mirror reads). */
export type ClaimKind = "x" | "r";

const CLAIM_NAME = /^([xr])-([0-9a-f]{16,64})\.json$/;

/** Failed remote operations are retried this many times in all when the error says it is transient. */
const TRANSIENT_ATTEMPTS = 5;

/** A lost attempt is repeated at least this many times before giving up, when the conflicting claim may be a contender. */
const QUICK_ATTEMPTS = 3;

/** Consecutive failed attempts (remote errors) before an acquisition gives up with the error. */
const FAILED_ATTEMPTS = 3;

/** `xo-vm-backups/.cairn-locks/<vm uuid>` */
export function claimsDir(vmUuid: string): string {
  return `${LOCKS_DIR}/${checkSegment("vmUuid", vmUuid)}`;
}

/** `xo-vm-backups/.cairn-locks/<vm uuid>/<kind>-<token>.json` */
export function claimPath(vmUuid: string, kind: ClaimKind, token: string): string {
  return `${claimsDir(vmUuid)}/${kind}-${token}.json`;
}

/** The content of a claim file (JSON). */
export interface LockClaimContent {
  formatVersion: 1;
  kind: ClaimKind;
  /** Random, fresh for each acquisition; also in the file name. */
  token: string;
  /** Who the claim belongs to: the run id, or another id the caller gives. {@link releaseClaimsOfOwner} goes by it. */
  owner: string;
  /** Host and process, for messages only. */
  holder: string;
  /** What for, e.g. "retention of job …"; messages show it. */
  purpose: string;
  /** Whether the holder deletes or rewrites backups (retention, merge, clean, removal): then it also excludes leases. */
  maintenance: boolean;
  /**
   * When the claim was acquired. In the first write (`renewals` 0) it is the writer's own clock, informative only (the
   * file's mtime is the remote's time of acquisition); every renewal writes the remote time of acquisition.
   */
  acquiredAt: string;
  /** How many times the holder renewed the claim. */
  renewals: number;
  /** How often the holder renews. */
  renewMs: number;
  /** Stale after this long without a renewal, by the remote's clock: the holder has stopped well before. */
  expiryMs: number;
}

/** A claim as a judge sees it at one remote time. */
export interface LockClaim {
  vmUuid: string;
  /** The claim file (or the old-format lock file). */
  path: string;
  kind: ClaimKind;
  /** The claim's token; `legacy` for an old-format lock file. */
  token: string;
  owner: string;
  holder: string;
  purpose: string;
  maintenance: boolean;
  /** When it was acquired, by the remote's clock (by the old holder's clock for an old-format lock file). */
  acquiredAt: Date;
  /** Its last renewal: the claim file's mtime (the `refreshedAt` of an old-format lock file). */
  renewedAt: Date;
  /** The time since its last renewal, by the remote's clock. */
  ageMs: number;
  expiryMs: number;
  renewals: number;
  /** Not renewed for `expiryMs`: ignored, and deleted by the next contender. */
  stale: boolean;
  /** An old-format lock file `xo-vm-backups/<vm>.cairn.lock` of a previous version of Cairn. */
  legacy: boolean;
  /** The file could not be read or parsed: it counts as a maintenance claim, stale after {@link LEGACY_LOCK_EXPIRY_MS}. */
  unreadable: boolean;
}

/** Options shared by {@link acquireVmLock} and {@link acquireVmLease}. */
export interface ClaimOptions {
  /** The owner id written in the claim (the run id). @default an id of this process, unique to its lifetime */
  owner?: string;
  /** Who holds it, for messages only. @default `<hostname> pid <pid>` */
  holder?: string;
  /** How long to keep retrying while a conflicting claim is live, in ms. */
  waitMs?: number;
  /** Cancels the wait (the promise rejects with the signal's reason). An attempt that already won is kept. */
  signal?: AbortSignal;
  /** The holder rewrites its claim this often. @default min({@link LOCK_RENEW_MS}, expiryMs / 6) */
  renewMs?: number;
  /** The claim is stale after this long without renewal (by the remote's clock). @default {@link LOCK_EXPIRY_MS} */
  expiryMs?: number;
  /** Renew every `renewMs` while held; otherwise only {@link HeldClaim.confirm} renews. @default true */
  autoRenew?: boolean;
  /** Called while waiting, with who holds the folder, each time that changes (e.g. to set a task's status). */
  onWait?: (description: string) => void;
  /**
   * This process's wall clock. It only fills the informative `acquiredAt` of a claim's first write: staleness is never
   * judged by it. @default () => new Date()
   */
  now?: () => Date;
  /** The randomized delay between attempts while waiting, growing from `min` to `max` ms. @default { min: 100, max: 5000 } */
  backoffMs?: { min?: number; max?: number };
  /** How to wait between attempts (tests). @default a timer, cancelled by `signal` */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** This process's monotonic clock in ms (tests). @default performance.now */
  monotonicNow?: () => number;
}

/** The settled options of one acquisition. */
interface Settings {
  owner: string;
  holder: string;
  waitMs: number;
  signal: AbortSignal | undefined;
  renewMs: number;
  expiryMs: number;
  /** How long after the start of its last successful renewal a holder still counts itself as holding. */
  holdMs: number;
  autoRenew: boolean;
  onWait: ((description: string) => void) | undefined;
  now: () => Date;
  backoffMin: number;
  backoffMax: number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  monotonicNow: () => number;
}

const PROCESS_OWNER = `${hostname()}/${process.pid}/${randomBytes(6).toString("hex")}`;

/** The owner id of claims taken without an `owner`: this process, for its lifetime (a restarted PID 1 gets a new one). */
export function processOwner(): string {
  return PROCESS_OWNER;
}

/** The holder description claims carry by default, for messages only. */
export function processHolder(host: string, pid: number): string {
  return `${host} pid ${pid}`;
}

function settle(options: ClaimOptions, defaultWaitMs: number): Settings {
  const expiryMs = options.expiryMs ?? LOCK_EXPIRY_MS;
  if (!(Number.isFinite(expiryMs) && expiryMs > 0)) throw new RangeError(`expiryMs must be a positive number of ms, got ${expiryMs}`);
  const holdMs = expiryMs - expiryMs / 3;
  const renewMs = options.renewMs ?? Math.min(LOCK_RENEW_MS, expiryMs / 6);
  if (!(Number.isFinite(renewMs) && renewMs > 0 && renewMs < holdMs)) {
    throw new RangeError(`renewMs must be positive and below two thirds of expiryMs (${holdMs} ms), got ${renewMs}`);
  }
  const waitMs = options.waitMs ?? defaultWaitMs;
  if (!(waitMs >= 0)) throw new RangeError(`waitMs must be 0 or more, got ${waitMs}`);
  const backoffMin = Math.max(1, options.backoffMs?.min ?? 100);
  const backoffMax = Math.max(backoffMin, options.backoffMs?.max ?? 5000);
  return {
    owner: options.owner ?? PROCESS_OWNER,
    holder: options.holder ?? processHolder(hostname(), process.pid),
    waitMs,
    signal: options.signal,
    renewMs,
    expiryMs,
    holdMs,
    autoRenew: options.autoRenew ?? true,
    onWait: options.onWait,
    now: options.now ?? (() => new Date()),
    backoffMin,
    backoffMax,
    sleep: options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, { signal })),
    monotonicNow: options.monotonicNow ?? (() => performance.now()),
  };
}

function isTransient(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { transient?: unknown }).transient === true;
}

/** Runs a remote operation, retrying it with a short random delay while it fails with a transient error. */
async function retrying<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= TRANSIENT_ATTEMPTS || !isTransient(error)) throw error;
      await sleepFor(Math.random() * 25 * 2 ** attempt);
    }
  }
}

/** Whether a claim of `kind` (exclusive and maintenance, or not) conflicts with `other`; an unreadable one with any. */
export function conflicts(
  kind: ClaimKind,
  maintenance: boolean,
  other: Pick<LockClaim, "kind" | "maintenance"> & { unreadable?: boolean },
): boolean {
  if (other.unreadable === true) return true;
  if (kind === "x" && other.kind === "x") return true;
  if (kind === "x") return maintenance; // other is a lease
  return other.kind === "x" && other.maintenance; // a lease against an exclusive claim
}

/** "retention of job … holds the backups of VM … (…)": who is in the way, for messages and `onWait`. */
export function describeClaim(claim: LockClaim): string {
  const what = claim.kind === "r" ? "a restore lease" : claim.maintenance ? "an exclusive maintenance lock" : "an exclusive lock";
  const old = claim.legacy ? `, an old-format lock file ${claim.path}` : claim.unreadable ? `, an unreadable claim ${claim.path}` : "";
  return (
    `${claim.purpose} holds the backups of VM ${claim.vmUuid} (${what} of ${claim.holder}, owner ${claim.owner}, since ` +
    `${claim.acquiredAt.toISOString()} remote time, renewed ${Math.max(0, Math.round(claim.ageMs / 1000))} s ago, stale after ` +
    `${Math.round(claim.expiryMs / 1000)} s without renewal${old})`
  );
}

function parseContent(raw: Buffer, kind: ClaimKind, token: string): LockClaimContent | undefined {
  let parsed: Partial<LockClaimContent>;
  try {
    parsed = JSON.parse(raw.toString("utf8")) as Partial<LockClaimContent>;
  } catch {
    // Not JSON (cut by a crash mid-write, or not ours): undefined is the answer, and the caller treats it as no valid claim.
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const ok =
    parsed.formatVersion === 1 &&
    parsed.kind === kind &&
    parsed.token === token &&
    typeof parsed.owner === "string" &&
    typeof parsed.holder === "string" &&
    typeof parsed.purpose === "string" &&
    typeof parsed.maintenance === "boolean" &&
    typeof parsed.acquiredAt === "string" &&
    typeof parsed.renewals === "number" &&
    typeof parsed.expiryMs === "number" &&
    Number.isFinite(parsed.expiryMs) &&
    parsed.expiryMs > 0;
  return ok ? (parsed as LockClaimContent) : undefined;
}

/**
 * Reads one claim at remote time `nowMs`; undefined when it is gone. The content is read before the mtime, so a renewal in
 * between makes the claim look younger, never older. A claim that cannot be read counts as a live maintenance claim.
 */
async function readClaim(remote: Remote, vmUuid: string, name: string, nowMs: number): Promise<LockClaim | undefined> {
  const match = CLAIM_NAME.exec(name);
  if (match === null) return undefined;
  const kind = match[1] as ClaimKind;
  const token = match[2];
  const path = `${claimsDir(vmUuid)}/${name}`;
  let raw: Buffer | undefined;
  let problem: string | undefined;
  try {
    raw = await retrying(() => remote.readFile(path));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    problem = messageOf(error);
  }
  let mtime: Date | undefined;
  try {
    mtime = (await retrying(() => remote.stat(path))).mtime;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    problem ??= messageOf(error);
  }
  const content = raw === undefined ? undefined : parseContent(raw, kind, token);
  if (content === undefined || mtime === undefined) {
    // Live (age 0) when even its time is unknown: a conservative guess, only a retry can tell more.
    const renewedAt = mtime ?? new Date(nowMs);
    const ageMs = nowMs - renewedAt.getTime();
    return {
      vmUuid,
      path,
      kind,
      token,
      owner: "(unknown)",
      holder: "an unknown process",
      purpose: `an unreadable claim (${problem ?? "not a claim of this version"})`,
      maintenance: true,
      acquiredAt: renewedAt,
      renewedAt,
      ageMs,
      expiryMs: LEGACY_LOCK_EXPIRY_MS,
      renewals: 0,
      stale: ageMs > LEGACY_LOCK_EXPIRY_MS,
      legacy: false,
      unreadable: true,
    };
  }
  const acquired = content.renewals > 0 ? new Date(content.acquiredAt) : mtime;
  const ageMs = nowMs - mtime.getTime();
  return {
    vmUuid,
    path,
    kind,
    token,
    owner: content.owner,
    holder: content.holder,
    purpose: content.purpose,
    maintenance: kind === "x" && content.maintenance,
    acquiredAt: Number.isNaN(acquired.getTime()) ? mtime : acquired,
    renewedAt: mtime,
    ageMs,
    expiryMs: content.expiryMs,
    renewals: content.renewals,
    // A claim this process released but could not delete (its remote was unreachable) is known dead: stale at once.
    stale: ageMs > content.expiryMs || abandonedTokens.has(token),
    legacy: false,
    unreadable: false,
  };
}

/** The content of an old-format lock file `xo-vm-backups/<vm>.cairn.lock` (Cairn before the claims protocol). */
export interface VmLockContent {
  formatVersion: 1;
  owner: string;
  holder: string;
  purpose: string;
  acquiredAt: string;
  refreshedAt: string;
  /** ISO time (the old holder's clock) after which anyone may take the lock over. */
  expiresAt: string;
}

/**
 * Reads an old-format lock file; undefined when there is none. An unreadable one counts as a lock from its mtime, stale
 * {@link LEGACY_LOCK_EXPIRY_MS} after it.
 */
export async function readLock(remote: Remote, path: string): Promise<VmLockContent | undefined> {
  let raw: Buffer;
  try {
    raw = await retrying(() => remote.readFile(path));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  try {
    const parsed = JSON.parse(raw.toString("utf8")) as VmLockContent;
    if (typeof parsed.owner === "string" && typeof parsed.expiresAt === "string" && !Number.isNaN(Date.parse(parsed.expiresAt)))
      return parsed;
  } catch {
    // not JSON: handled below like any unreadable lock file
  }
  let mtime: Date;
  try {
    mtime = (await retrying(() => remote.stat(path))).mtime;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  return {
    formatVersion: 1,
    owner: "(unreadable lock file)",
    holder: "an unknown process",
    purpose: "unknown",
    acquiredAt: mtime.toISOString(),
    refreshedAt: mtime.toISOString(),
    expiresAt: new Date(mtime.getTime() + LEGACY_LOCK_EXPIRY_MS).toISOString(),
  };
}

/**
 * An old-format lock file as a claim: exclusive, maintenance unless its purpose is a backup; live until its own
 * `expiresAt` compared with the remote time `nowMs`.
 */
async function readLegacyClaim(remote: Remote, vmUuid: string, nowMs: number): Promise<LockClaim | undefined> {
  const path = vmLockPath(vmUuid);
  const content = await readLock(remote, path);
  if (content === undefined) return undefined;
  const expiresAt = Date.parse(content.expiresAt);
  const refreshed = Date.parse(content.refreshedAt);
  const acquired = Date.parse(content.acquiredAt);
  const renewedAt = new Date(Number.isNaN(refreshed) ? nowMs : refreshed);
  return {
    vmUuid,
    path,
    kind: "x",
    token: "legacy",
    owner: content.owner,
    holder: content.holder,
    purpose: content.purpose,
    maintenance: !/^backup\b/.test(content.purpose),
    acquiredAt: Number.isNaN(acquired) ? renewedAt : new Date(acquired),
    renewedAt,
    ageMs: nowMs - renewedAt.getTime(),
    expiryMs: Math.max(0, expiresAt - renewedAt.getTime()),
    renewals: 1,
    stale: !(expiresAt > nowMs),
    legacy: true,
    unreadable: content.owner === "(unreadable lock file)",
  };
}

/** What a judge sees in a VM's claims folder at one remote time. */
interface Snapshot {
  /** Every claim but the judge's own, and an old-format lock file if any. */
  claims: LockClaim[];
  /** Whether the judge's own claim was listed. */
  ownListed: boolean;
  /** Temporary files (interrupted writes, clock probes) older than {@link LEGACY_LOCK_EXPIRY_MS}. */
  leftovers: string[];
}

async function snapshot(remote: Remote, vmUuid: string, nowMs: number, ownName?: string): Promise<Snapshot> {
  const dir = claimsDir(vmUuid);
  const names = await retrying(() => remote.list(dir));
  const others = names.filter((name) => name !== ownName && CLAIM_NAME.test(name));
  const debris = names.filter((name) => isTemporaryName(name));
  const [claims, legacy, leftovers] = await Promise.all([
    Promise.all(others.map((name) => readClaim(remote, vmUuid, name, nowMs))),
    readLegacyClaim(remote, vmUuid, nowMs),
    Promise.all(
      debris.map(async (name) => {
        const path = `${dir}/${name}`;
        // Unknown age (gone meanwhile, or unreadable): not taken as a leftover this time; the next contender looks again.
        const stat = await retrying(() => remote.stat(path)).catch(() => undefined);
        return stat !== undefined && nowMs - stat.mtime.getTime() > LEGACY_LOCK_EXPIRY_MS ? path : undefined;
      }),
    ),
  ]);
  const found = claims.filter((claim): claim is LockClaim => claim !== undefined);
  if (legacy !== undefined) found.push(legacy);
  found.sort(byAcquisition);
  return {
    claims: found,
    ownListed: ownName !== undefined && names.includes(ownName),
    leftovers: leftovers.filter((path): path is string => path !== undefined),
  };
}

/** Earlier acquisition first; equal times by token. */
function byAcquisition(a: Pick<LockClaim, "acquiredAt" | "token">, b: Pick<LockClaim, "acquiredAt" | "token">): number {
  return a.acquiredAt.getTime() - b.acquiredAt.getTime() || (a.token < b.token ? -1 : a.token > b.token ? 1 : 0);
}

/** Deletes the stale claims and leftovers a snapshot saw; best effort (the next contender tries again). */
async function removeStale(remote: Remote, seen: Snapshot): Promise<void> {
  const stale = seen.claims.filter((claim) => claim.stale);
  // A stale claim that stays is still stale for everyone: it blocks nobody, and the next contender deletes it.
  await Promise.all([
    ...stale.map((claim) =>
      retrying(() => remote.delete(claim.path)).then(
        () => abandonedTokens.delete(claim.token),
        () => undefined,
      ),
    ),
    ...seen.leftovers.map((path) => retrying(() => remote.delete(path)).catch(() => undefined)),
  ]);
}

/** The remote's current time: the mtime of a probe file written (and deleted) for the purpose. */
async function remoteNow(remote: Remote, vmUuid: string): Promise<number> {
  // A temporary name: a probe left by a crash is removed like any leftover of an interrupted write.
  const path = temporaryPathFor(`${claimsDir(vmUuid)}/clock`);
  await retrying(() => remote.writeFile(path, ""));
  try {
    return (await retrying(() => remote.stat(path))).mtime.getTime();
  } finally {
    // A probe left behind keeps its temporary name: removed with the other leftovers (see `removeStale`).
    await retrying(() => remote.delete(path)).catch(() => undefined);
  }
}

/**
 * The claims of a VM folder by the remote's clock (the live ones unless `includeStale`), earliest first, with an
 * old-format lock file if any. It writes (and deletes) a small probe file to learn the remote's time.
 */
export async function liveClaims(remote: Remote, vmUuid: string, options: { includeStale?: boolean } = {}): Promise<LockClaim[]> {
  const now = await remoteNow(remote, vmUuid);
  const { claims } = await snapshot(remote, vmUuid, now);
  return options.includeStale === true ? claims : claims.filter((claim) => !claim.stale);
}

/** Options of {@link releaseClaimsOfOwner}. */
export interface ReleaseClaimsOptions {
  /**
   * Also delete a claim of the owner not renewed for this long (by the remote's clock), though not yet stale: for a run
   * whose process is known to be gone (say 2 × renewMs). A process that is in fact alive loses its claim at its next
   * renewal, but may act until then: pass it only for a process known to be dead.
   */
  deadAfterMs?: number;
}

/**
 * Deletes the claims of `owner` (a run known to be dead) that are stale by the remote's clock, or not renewed for
 * `deadAfterMs`. A claim renewed more recently is left alone, whoever holds it; claims are never matched by holder.
 * Returns the claims deleted.
 */
export async function releaseClaimsOfOwner(
  remote: Remote,
  vmUuid: string,
  owner: string,
  options: ReleaseClaimsOptions = {},
): Promise<LockClaim[]> {
  const now = await remoteNow(remote, vmUuid);
  const { claims } = await snapshot(remote, vmUuid, now);
  const dead = claims.filter(
    (claim) =>
      !claim.legacy &&
      !claim.unreadable &&
      claim.owner === owner &&
      (claim.stale || (options.deadAfterMs !== undefined && claim.ageMs > options.deadAfterMs)),
  );
  for (const claim of dead) await retrying(() => remote.delete(claim.path));
  return dead;
}

/** A held claim: the base of {@link VmLock} and {@link VmLease}. */
/**
 * Tokens of the claims this process released without managing to delete them (a remote cut mid-run). Such a claim is
 * never renewed again, so others judge it stale after its expiry; this process knows it is dead at once, and takes it
 * over (deletes it) the next time it looks at that folder instead of waiting out the expiry. Tokens are random: a token
 * seen on any remote is that claim.
 */
const abandonedTokens = new Set<string>();

export class HeldClaim {
  /** Aborts, with the LOCKED error as its reason, the moment the claim is known lost (not on release). */
  readonly signal: AbortSignal;
  /** The claim file. */
  readonly path: string;
  private readonly name: string;
  private readonly controller = new AbortController();
  private lost: RepositoryError | undefined;
  private released = false;
  private releasing: Promise<void> | undefined;
  /** Monotonic time of the start of the last successful renewal (or of the winning write). */
  private confirmedAt: number;
  private renewals = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  /** Tokens of the conflicting live claims seen at the last check (see {@link renewOnce}). */
  private suspects = new Set<string>();

  /** @internal use acquireVmLock or acquireVmLease */
  constructor(
    private readonly remote: Remote,
    readonly vmUuid: string,
    readonly kind: ClaimKind,
    readonly token: string,
    readonly purpose: string,
    readonly maintenance: boolean,
    /** The remote's time of acquisition (the mtime of the winning claim). */
    readonly acquiredAt: Date,
    private readonly settings: Settings,
    confirmedAt: number,
  ) {
    this.path = claimPath(vmUuid, kind, token);
    this.name = `${kind}-${token}.json`;
    this.signal = this.controller.signal;
    this.confirmedAt = confirmedAt;
    this.scheduleDeadline();
    if (settings.autoRenew) this.scheduleRenew(settings.renewMs);
  }

  /** The owner id written in the claim. */
  get owner(): string {
    return this.settings.owner;
  }

  /** The holder description written in the claim. */
  get holder(): string {
    return this.settings.holder;
  }

  private get noun(): string {
    return this.kind === "r" ? "restore lease" : "lock";
  }

  /**
   * Throws unless the claim is held: not released, not lost (a renewal failed or found it gone), and renewed recently
   * enough by this process's monotonic clock that nobody may judge it stale yet. No I/O: call it before every delete,
   * every metadata write, every merge block.
   * @throws RepositoryError LOCKED
   */
  assertHeld(): void {
    if (this.lost !== undefined) throw this.lost;
    if (this.released) {
      throw new RepositoryError(
        RepositoryErrorReason.Locked,
        `the ${this.noun} of VM ${this.vmUuid} for ${this.purpose} was released; nothing more may be written under it`,
        {
          path: this.path,
          vmUuid: this.vmUuid,
        },
      );
    }
    this.checkDeadline();
    if (this.lost !== undefined) throw this.lost;
  }

  /** Renews the claim now and checks it on the remote. @throws RepositoryError LOCKED when it is lost. */
  async confirm(): Promise<void> {
    this.assertHeld();
    await this.renew();
    this.assertHeld();
  }

  /**
   * Stops renewing and deletes the claim (after a renewal in flight). Idempotent; never fails: a claim that cannot be
   * deleted goes stale after `expiryMs`. The signal is not aborted.
   */
  release(): Promise<void> {
    this.releasing ??= (async () => {
      this.released = true;
      this.stopTimers();
      await this.inFlight;
      // Never fails (see above): a claim that cannot be deleted stops being renewed, so it goes stale after `expiryMs`.
      await retrying(() => this.remote.delete(this.path)).then(
        () => abandonedTokens.delete(this.token),
        () => abandonedTokens.add(this.token),
      );
    })();
    return this.releasing;
  }

  private stopTimers(): void {
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.renewTimer = undefined;
    this.deadlineTimer = undefined;
  }

  private lose(reason: string, cause?: unknown): void {
    if (this.lost !== undefined || this.released) return;
    this.lost = new RepositoryError(
      RepositoryErrorReason.Locked,
      `the ${this.noun} of VM ${this.vmUuid} for ${this.purpose} is no longer held by this process: ${reason}; the operation stops without writing more`,
      { path: this.path, vmUuid: this.vmUuid, token: this.token, owner: this.owner },
      cause === undefined ? undefined : { cause },
    );
    this.stopTimers();
    this.controller.abort(this.lost);
  }

  private checkDeadline(): void {
    const elapsed = this.settings.monotonicNow() - this.confirmedAt;
    if (elapsed > this.settings.holdMs) {
      this.lose(
        `its claim was last renewed ${Math.round(elapsed / 1000)} s ago by this process's clock, and others may judge it stale ` +
          `${Math.round(this.settings.expiryMs / 1000)} s after its last renewal`,
      );
    }
  }

  private scheduleDeadline(): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    const remaining = this.settings.holdMs - (this.settings.monotonicNow() - this.confirmedAt);
    this.deadlineTimer = setTimeout(
      () => {
        this.deadlineTimer = undefined;
        this.checkDeadline();
        if (this.lost === undefined && !this.released) this.scheduleDeadline();
      },
      Math.min(Math.max(remaining + 1, 1), this.settings.holdMs + 1),
    );
    this.deadlineTimer.unref();
  }

  private scheduleRenew(delay: number): void {
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      const started = this.settings.monotonicNow();
      void this.renew().then(() => {
        if (this.lost === undefined && !this.released && this.renewTimer === undefined) {
          this.scheduleRenew(Math.max(0, this.settings.renewMs - (this.settings.monotonicNow() - started)));
        }
      });
    }, delay);
    this.renewTimer.unref();
  }

  /** One renewal after any in flight; never rejects (a failure loses the claim). */
  private renew(): Promise<void> {
    const next = (this.inFlight ?? Promise.resolve()).then(() => this.renewOnce());
    this.inFlight = next;
    void next.then(() => {
      if (this.inFlight === next) this.inFlight = undefined;
    });
    return next;
  }

  /**
   * Renews: checks the claim is still there, rewrites it (new mtime), then re-lists the folder.
   *
   * Lost when the claim is gone (someone deleted it), when the renewal cannot be done (after up to 3 tries, each with
   * transient retries), when it ends past the holding deadline, when a live old-format lock file now conflicts (an old
   * version of Cairn does not see claims), or by the tie rule: a conflicting live claim seen on two consecutive checks
   * that was acquired earlier (remote time, then token). The protocol never lets two conflicting claims both win; a
   * conflicting claim written after ours belongs to a contender that saw ours and withdraws within one attempt, so the
   * holder ignores it. One that stays across two checks means two holders (a remote that broke consistent listing) or a
   * contender that died mid-attempt: of two holders, both apply the same rule and exactly the later one stops.
   */
  private async renewOnce(): Promise<void> {
    let failure: unknown;
    for (let attempt = 1; attempt <= 3; attempt++) {
      if (this.lost !== undefined || this.released) return;
      const started = this.settings.monotonicNow();
      try {
        await this.renewAndCheck(started);
        return;
      } catch (error) {
        failure = error;
        if (isNotFound(error)) break;
        this.checkDeadline();
        await sleepFor(Math.random() * 50 * attempt);
      }
    }
    this.lose(
      isNotFound(failure)
        ? "its claim file is gone (another process deleted it, judging it stale or its owner dead)"
        : `its claim could not be renewed (${messageOf(failure)})`,
      failure,
    );
  }

  private async renewAndCheck(started: number): Promise<void> {
    await retrying(() => this.remote.stat(this.path)); // NOT_FOUND: deleted by someone; never re-create it
    if (this.lost !== undefined || this.released) return;
    const content: LockClaimContent = {
      ...claimContent(this.kind, this.token, this.purpose, this.maintenance, this.settings, this.acquiredAt.toISOString()),
      renewals: this.renewals + 1,
    };
    await retrying(() => this.remote.writeFile(this.path, JSON.stringify(content)));
    this.renewals += 1;
    const now = (await retrying(() => this.remote.stat(this.path))).mtime.getTime();
    const seen = await snapshot(this.remote, this.vmUuid, now, this.name);
    if (this.lost !== undefined || this.released) return;
    if (!seen.ownListed) return this.lose("its claim is not in the listing of the claims folder");
    const conflicting = seen.claims.filter((claim) => !claim.stale && conflicts(this.kind, this.maintenance, claim));
    const legacy = conflicting.find((claim) => claim.legacy);
    if (legacy !== undefined) return this.lose(`an old version of Cairn took the old-format lock meanwhile: ${describeClaim(legacy)}`);
    const earlier = conflicting.find((claim) => this.suspects.has(claim.token) && byAcquisition(claim, this) < 0);
    this.suspects = new Set(conflicting.map((claim) => claim.token));
    if (earlier !== undefined)
      return this.lose(`a conflicting claim acquired earlier is live too, and the later one stops: ${describeClaim(earlier)}`);
    this.checkDeadline();
    if (this.lost !== undefined) return;
    this.confirmedAt = started;
    this.scheduleDeadline();
  }
}

function claimContent(
  kind: ClaimKind,
  token: string,
  purpose: string,
  maintenance: boolean,
  settings: Settings,
  acquiredAt: string,
): LockClaimContent {
  return {
    formatVersion: 1,
    kind,
    token,
    owner: settings.owner,
    holder: settings.holder,
    purpose,
    maintenance: kind === "x" && maintenance,
    acquiredAt,
    renewals: 0,
    renewMs: settings.renewMs,
    expiryMs: settings.expiryMs,
  };
}

function lockedError(vmUuid: string, kind: ClaimKind, blockers: LockClaim[]): RepositoryError {
  const first = blockers[0];
  return new RepositoryError(
    RepositoryErrorReason.Locked,
    `${kind === "r" ? "cannot read" : "cannot lock"} the backups of VM ${vmUuid}: ${blockers.map(describeClaim).join("; ")}; ` +
      `wait for it to finish (a claim not renewed for its expiry is stale and is taken over)`,
    {
      path: first.path,
      vmUuid,
      holder: first.holder,
      owner: first.owner,
      purpose: first.purpose,
      since: first.acquiredAt.toISOString(),
      renewedAt: first.renewedAt.toISOString(),
      legacy: first.legacy,
    },
  );
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
}

type Attempt = { won: true; remoteNow: Date; started: number } | { won: false; blockers: LockClaim[] };

/**
 * Takes a claim: attempts (write own claim, stat it for the remote's time, list, judge) until one wins, or until `waitMs`
 * has passed, with a randomized growing delay between attempts.
 */
export async function acquireClaim<T extends HeldClaim>(
  remote: Remote,
  vmUuid: string,
  purpose: string,
  kind: ClaimKind,
  maintenance: boolean,
  options: ClaimOptions,
  defaultWaitMs: number,
  make: (...args: ConstructorParameters<typeof HeldClaim>) => T,
): Promise<T> {
  const settings = settle(options, defaultWaitMs);
  const token = randomBytes(12).toString("hex");
  const path = claimPath(vmUuid, kind, token);
  const name = `${kind}-${token}.json`;
  const exclusiveMaintenance = kind === "x" && maintenance;
  const signal = settings.signal;

  /**
   * Whether our claim file may be on the remote: from the start of a write until a delete of it succeeded. A write that
   * failed may still have landed (the server renamed the file, then its answer or the folder flush failed), so only a
   * successful delete clears it.
   */
  let claimMayStand = false;
  const withdraw = async (): Promise<void> => {
    await retrying(() => remote.delete(path));
    claimMayStand = false;
  };

  const attempt = async (): Promise<Attempt> => {
    const started = settings.monotonicNow();
    try {
      claimMayStand = true;
      await retrying(() =>
        remote.writeFile(path, JSON.stringify(claimContent(kind, token, purpose, maintenance, settings, settings.now().toISOString()))),
      );
      const now = (await retrying(() => remote.stat(path))).mtime;
      const seen = await snapshot(remote, vmUuid, now.getTime(), name);
      await removeStale(remote, seen);
      if (!seen.ownListed) {
        throw new RepositoryError(
          RepositoryErrorReason.Locked,
          `the listing of ${claimsDir(vmUuid)} did not show the claim just written there: ${remote.name} does not list consistently, and cannot be locked`,
          { path, vmUuid },
        );
      }
      const blockers = seen.claims.filter((claim) => !claim.stale && conflicts(kind, exclusiveMaintenance, claim));
      if (blockers.length === 0) return { won: true, remoteNow: now, started };
      await withdraw().catch(() => undefined); // a leftover is replaced by the next attempt, or deleted when giving up
      blockers.sort((a, b) => Number(b.maintenance) - Number(a.maintenance) || byAcquisition(a, b));
      return { won: false, blockers };
    } catch (error) {
      // The error below is the answer; a claim we could not delete is never renewed, so it goes stale and is removed.
      await withdraw().catch(() => undefined);
      throw error;
    }
  };

  const pause = async (ms: number): Promise<void> => {
    try {
      await settings.sleep(ms, signal);
    } catch (error) {
      throw signal?.aborted ? abortReason(signal) : error;
    }
  };

  const begin = settings.monotonicNow();
  let lastDescription: string | undefined;
  let failures = 0;
  try {
    for (let count = 1; ; count++) {
      if (signal?.aborted) throw abortReason(signal);
      let result: Attempt;
      try {
        result = await attempt();
        failures = 0;
      } catch (error) {
        if (++failures >= FAILED_ATTEMPTS || error instanceof RepositoryError) throw error;
        await pause(settings.backoffMin);
        continue;
      }
      if (result.won) return make(remote, vmUuid, kind, token, purpose, exclusiveMaintenance, result.remoteNow, settings, result.started);

      const { blockers } = result;
      const elapsed = settings.monotonicNow() - begin;
      // Two contenders that meet may both withdraw: one not yet renewed may be such a contender, so a few quick attempts
      // are made even when not waiting.
      const mayBeContender = blockers.some((claim) => !claim.legacy && claim.renewals === 0);
      const quick = elapsed >= settings.waitMs;
      if (quick && !(count < QUICK_ATTEMPTS && mayBeContender)) throw lockedError(vmUuid, kind, blockers);
      const description = describeClaim(blockers[0]);
      if (!quick && description !== lastDescription) {
        lastDescription = description;
        settings.onWait?.(description);
      }
      const cap = Math.min(settings.backoffMax, settings.backoffMin * 2 ** (count - 1));
      const delay = quick
        ? Math.random() * 2 * settings.backoffMin
        : Math.min(cap / 2 + (Math.random() * cap) / 2, Math.max(0, settings.waitMs - elapsed));
      await pause(delay);
    }
  } catch (error) {
    // Giving up (waited long enough, aborted, failed): no claim of ours may stay behind, live-looking, for its expiry.
    if (claimMayStand) await withdraw().catch(() => undefined);
    throw error;
  }
}
