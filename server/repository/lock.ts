import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Remote } from "../remotes/remote.js";
import { vmLockPath } from "./layout.js";
import { RepositoryError, RepositoryErrorReason, isNotFound } from "./repository-error.js";

/** A lock is stale this long after its last refresh. */
export const LOCK_EXPIRY_MS = 10 * 60 * 1000;

/** Options of {@link acquireVmLock}. */
export interface VmLockOptions {
  /** The clock. @default () => new Date() */
  now?: () => Date;
  /** Stale after this long without refresh. @default {@link LOCK_EXPIRY_MS} */
  expiryMs?: number;
  /** Who holds it, for the message another process sees. @default `<hostname> pid <pid>` */
  holder?: string;
  /** Refresh automatically every third of the expiry while held. @default true */
  autoRefresh?: boolean;
}

/** The lock file's content (JSON). */
export interface VmLockContent {
  formatVersion: 1;
  /** A random token: the holder's identity. */
  owner: string;
  holder: string;
  purpose: string;
  acquiredAt: string;
  refreshedAt: string;
  /** ISO time after which anyone may take the lock over. */
  expiresAt: string;
}

/**
 * The lock of one VM folder (`xo-vm-backups/<vm>.cairn.lock`), held by a backup writer, retention or the cleaner. It is a
 * small JSON file with an owner token and an expiry; a lock not refreshed for {@link LOCK_EXPIRY_MS} is stale and is taken
 * over. A remote has no exclusive create, so taking it is write-then-read-back: two processes racing within the same
 * moment can both believe they won, which is why the engine also serialises runs of a job in Postgres; the lock guards
 * against other processes and tools, and against a slow run overlapping the next one.
 */
export class VmLock {
  private timer: NodeJS.Timeout | undefined;
  private lostReason: string | undefined;
  private released = false;

  /** @internal use {@link acquireVmLock} */
  constructor(
    private readonly remote: Remote,
    readonly vmUuid: string,
    readonly path: string,
    private content: VmLockContent,
    private readonly options: Required<VmLockOptions>,
  ) {
    if (options.autoRefresh) {
      this.timer = setInterval(() => {
        this.refresh().catch((error: unknown) => {
          this.lostReason ??= `the lock could not be refreshed: ${(error as Error).message}`;
        });
      }, Math.max(1000, options.expiryMs / 3));
      this.timer.unref();
    }
  }

  /** The owner token written in the file. */
  get owner(): string {
    return this.content.owner;
  }

  /** When the lock goes stale unless refreshed. */
  get expiresAt(): Date {
    return new Date(this.content.expiresAt);
  }

  /**
   * Pushes the expiry back. Fails (and the lock counts as lost) when the file now names another owner: someone took it
   * over as stale.
   */
  async refresh(): Promise<void> {
    await this.assertHeld();
    const now = this.options.now();
    const content = { ...this.content, refreshedAt: now.toISOString(), expiresAt: new Date(now.getTime() + this.options.expiryMs).toISOString() };
    await this.remote.writeFile(this.path, JSON.stringify(content));
    this.content = content;
  }

  /**
   * Throws unless the file still names this owner: a writer checks this right before writing metadata, so a process that
   * lost its lock never commits over another's work.
   * @throws RepositoryError LOCKED
   */
  async assertHeld(): Promise<void> {
    if (this.released) this.lostReason ??= "the lock was released";
    if (this.lostReason === undefined) {
      const current = await readLock(this.remote, this.path);
      if (current?.owner !== this.content.owner) {
        this.lostReason = current ? `${current.holder} took it over (${current.purpose}) at ${current.acquiredAt}` : "the lock file is gone";
      }
    }
    if (this.lostReason !== undefined) {
      throw new RepositoryError(RepositoryErrorReason.Locked, `the lock of VM ${this.vmUuid} is no longer held by this process: ${this.lostReason}; the operation stops without writing more`, { path: this.path });
    }
  }

  /** Removes the file if it is still ours. Idempotent. */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.released) return;
    this.released = true;
    const current = await readLock(this.remote, this.path);
    if (current?.owner === this.content.owner) await this.remote.delete(this.path);
  }
}

/** Reads a lock file; undefined when there is none. An unreadable file counts as a lock from its modification time. */
export async function readLock(remote: Remote, path: string): Promise<VmLockContent | undefined> {
  let raw: Buffer;
  try {
    raw = await remote.readFile(path);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  try {
    const parsed = JSON.parse(raw.toString("utf8")) as VmLockContent;
    if (typeof parsed.owner === "string" && typeof parsed.expiresAt === "string") return parsed;
  } catch {
    // not JSON: handled below like any unreadable lock file
  }
  const stat = await remote.stat(path);
  return {
    formatVersion: 1,
    owner: "(unreadable lock file)",
    holder: "an unknown process",
    purpose: "unknown",
    acquiredAt: stat.mtime.toISOString(),
    refreshedAt: stat.mtime.toISOString(),
    expiresAt: new Date(stat.mtime.getTime() + LOCK_EXPIRY_MS).toISOString(),
  };
}

/**
 * Takes the lock of a VM folder for `purpose` ("backup", "retention", "clean").
 * @throws RepositoryError LOCKED when another owner holds a lock that is not stale; the message names the holder, the
 *   purpose and until when.
 */
export async function acquireVmLock(remote: Remote, vmUuid: string, purpose: string, options: VmLockOptions = {}): Promise<VmLock> {
  const settings: Required<VmLockOptions> = {
    now: options.now ?? (() => new Date()),
    expiryMs: options.expiryMs ?? LOCK_EXPIRY_MS,
    holder: options.holder ?? processHolder(hostname(), process.pid),
    autoRefresh: options.autoRefresh ?? true,
  };
  const path = vmLockPath(vmUuid);
  const now = settings.now();
  const existing = await readLock(remote, path);
  if (existing && new Date(existing.expiresAt).getTime() > now.getTime()) throw lockedError(vmUuid, path, existing);
  const content: VmLockContent = {
    formatVersion: 1,
    owner: randomUUID(),
    holder: settings.holder,
    purpose,
    acquiredAt: now.toISOString(),
    refreshedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + settings.expiryMs).toISOString(),
  };
  await remote.writeFile(path, JSON.stringify(content));
  const check = await readLock(remote, path);
  if (check?.owner !== content.owner) throw lockedError(vmUuid, path, check ?? content);
  return new VmLock(remote, vmUuid, path, content, settings);
}

function lockedError(vmUuid: string, path: string, held: VmLockContent): RepositoryError {
  return new RepositoryError(
    RepositoryErrorReason.Locked,
    `the backups of VM ${vmUuid} are locked by ${held.holder} for ${held.purpose} since ${held.acquiredAt} (stale after ${held.expiresAt} unless refreshed); wait for it to finish, or delete ${path} if that process is gone`,
    { path, holder: held.holder, purpose: held.purpose, expiresAt: held.expiresAt },
  );
}

/**
 * Removes a VM folder's lock when `holder` holds it: for a holder known to be dead (the process of an interrupted run), so
 * the next run need not wait for the lock to go stale. Returns whether a lock was removed.
 */
export async function releaseLockOfDeadHolder(remote: Remote, vmUuid: string, holder: string): Promise<boolean> {
  const path = vmLockPath(vmUuid);
  const existing = await readLock(remote, path);
  if (!existing || existing.holder !== holder) return false;
  await remote.delete(path);
  return true;
}

/** The holder name {@link acquireVmLock} uses by default for a process. */
export function processHolder(host: string, pid: number): string {
  return `${host} pid ${pid}`;
}
