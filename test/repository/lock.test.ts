import { randomBytes, randomUUID } from "node:crypto";
import { stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import { RemoteError } from "../../server/remotes/remote-error.js";
import type { Remote } from "../../server/remotes/remote.js";
import { S3Remote } from "../../server/remotes/s3-remote.js";
import { SmbRemote } from "../../server/remotes/smb-remote.js";
import { vmLockPath } from "../../server/repository/layout.js";
import {
  LOCK_EXPIRY_MS,
  type LockClaimContent,
  type VmLock,
  type VmLockOptions,
  acquireVmLease,
  acquireVmLock,
  claimPath,
  claimsDir,
  liveClaims,
  releaseClaimsOfOwner,
} from "../../server/repository/lock.js";
import { RepositoryError, RepositoryErrorReason } from "../../server/repository/repository-error.js";
import { startS3rver, type S3rverPeer } from "../remotes/s3rver-process.js";
import { startSamba, type SambaPeer } from "../remotes/samba-process.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { stopAll } from "../support/stop-all.js";
import { tempFolder } from "../support/temp-folder.js";

const MINUTE = 60_000;

/** A fresh LOCAL remote (its folder removed after the test that made it: tempFolder). */
async function localRemote(): Promise<LocalRemote> {
  return new LocalRemote(await tempFolder("cairn-lock-"));
}

/** Moves a file's mtime `ms` into the past on a LOCAL remote: the remote's clock says it was last written then. */
async function age(remote: LocalRemote, path: string, ms: number): Promise<void> {
  const file = join(remote.root, path);
  const { mtime } = await stat(file);
  const when = new Date(mtime.getTime() - ms);
  await utimes(file, when, when);
}

/** A remote that behaves as `inner` except for the members given. */
function wrap(inner: Remote, overrides: Partial<Remote>): Remote {
  return new Proxy(inner, {
    get(target, property, receiver) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof Remote];
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The claim files in a VM's claims folder. */
async function claimNames(remote: Remote, vmUuid: string): Promise<string[]> {
  return (await remote.list(claimsDir(vmUuid))).filter((name) => /^[xr]-[0-9a-f]+\.json$/.test(name));
}

async function expectLocked(promise: Promise<unknown>, pattern?: RegExp): Promise<RepositoryError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(RepositoryError);
  expect((error as RepositoryError).reason).toBe(RepositoryErrorReason.Locked);
  if (pattern) expect((error as Error).message).toMatch(pattern);
  return error as RepositoryError;
}

function thrownBy(action: () => void): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** Resolves when the signal aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(signal.reason), { once: true }));
}

/** A promise with its resolver, to wait for a callback. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => (resolve = done));
  return { promise, resolve };
}

/** A claim file as another process would write it (to forge situations the protocol itself never produces). */
function forgedClaim(fields: Partial<LockClaimContent> & Pick<LockClaimContent, "kind" | "token">): LockClaimContent {
  return {
    formatVersion: 1,
    owner: "someone-else",
    holder: "other-host pid 7",
    purpose: "forged",
    maintenance: false,
    acquiredAt: new Date().toISOString(),
    renewals: 0,
    renewMs: 30_000,
    expiryMs: LOCK_EXPIRY_MS,
    ...fields,
  };
}

const FAST: VmLockOptions = { backoffMs: { min: 2, max: 40 }, autoRenew: false };

/**
 * A file the protocol ignores, so the claims folder never empties: s3rver (not S3) removes a folder emptied by a delete,
 * and a PUT into that folder at the same moment then crashes s3rver with ENOENT.
 */
async function keepFolder(remote: Remote, vmUuid: string): Promise<void> {
  await remote.writeFile(`${claimsDir(vmUuid)}/keep`, "");
}

/**
 * Two contenders (each with its own connection to the remote) × `rounds`. In each round both first attempts are forced to
 * overlap (each waits after writing its claim until the other has written too), so both must see each other and withdraw;
 * then randomized retries must end with exactly one winner, which aborts the other's wait. A second winner in a round is
 * two holders at once. Then contenders take turns in a critical section that does remote I/O.
 */
function contentionSuite(kind: string, setup: () => Promise<{ remotes: () => [Remote, Remote]; rounds: number; turns: number }>) {
  describe(`claims on ${kind}: contention`, () => {
    let remotes: () => [Remote, Remote];
    let rounds = 0;
    let turns = 0;
    beforeAll(async () => {
      ({ remotes, rounds, turns } = await setup());
    });

    it("two contenders, overlapping first attempts: each round ends with exactly one winner, never two", { timeout: 600_000 }, async () => {
      const vmUuid = randomUUID();
      const [first, second] = remotes();
      await keepFolder(first, vmUuid);
      let barrier: { arrived: number; open: () => void; opened: Promise<void> } | undefined;
      const passed = [false, false];
      const contender = (inner: Remote, index: number): Remote =>
        wrap(inner, {
          async writeFile(path: string, data: Uint8Array | string) {
            await inner.writeFile(path, data);
            if (barrier !== undefined && !passed[index] && /\/x-[0-9a-f]+\.json$/.test(path)) {
              passed[index] = true;
              if (++barrier.arrived === 2) barrier.open();
              await barrier.opened;
            }
          },
        });
      const sides = [contender(first, 0), contender(second, 1)];
      for (let round = 0; round < rounds; round++) {
        const gate = deferred();
        barrier = { arrived: 0, open: () => gate.resolve(), opened: gate.promise };
        passed.fill(false);
        const round$ = new AbortController();
        const winners: VmLock[] = [];
        const waited = [0, 0];
        const results = await Promise.allSettled(
          sides.map(async (remote, index) => {
            const lock = await acquireVmLock(remote, vmUuid, `contender ${index} round ${round}`, {
              ...FAST,
              maintenance: true,
              owner: `run-${index}`,
              waitMs: 5 * MINUTE,
              signal: round$.signal,
              onWait: () => (waited[index] += 1),
            });
            winners.push(lock);
            round$.abort();
            return lock;
          }),
        );
        expect(winners).toHaveLength(1);
        expect(results.filter((result) => result.status === "rejected").map((result) => (result as PromiseRejectedResult).reason)).toEqual([
          round$.signal.reason,
        ]);
        // Both claims were written before either listed: whichever listed first saw the other's claim and withdrew
        // (the other may then find it gone and win at once, or see it too and withdraw as well).
        expect(waited[0] + waited[1]).toBeGreaterThanOrEqual(1);
        expect(await claimNames(first, vmUuid)).toEqual([`x-${winners[0].token}.json`]);
        winners[0].assertHeld();
        await winners[0].release();
        expect(await claimNames(second, vmUuid)).toEqual([]);
      }
    });

    it("contenders taking turns are never both inside, and every one gets in", { timeout: 600_000 }, async () => {
      const vmUuid = randomUUID();
      let inside = 0;
      let most = 0;
      let entries = 0;
      await keepFolder(remotes()[0], vmUuid);
      await Promise.all(
        remotes().map(async (remote, index) => {
          for (let turn = 0; turn < turns; turn++) {
            const lock = await acquireVmLock(remote, vmUuid, `turn ${turn} of ${index}`, { ...FAST, waitMs: 5 * MINUTE });
            inside++;
            most = Math.max(most, inside);
            entries++;
            await lock.confirm(); // remote I/O while holding: the other keeps trying meanwhile
            lock.assertHeld();
            inside--;
            await lock.release();
          }
        }),
      );
      expect(most).toBe(1);
      expect(entries).toBe(2 * turns);
      expect(await claimNames(remotes()[0], vmUuid)).toEqual([]);
    });
  });
}

contentionSuite("LOCAL", async () => {
  const remote = await localRemote();
  return { remotes: () => [new LocalRemote(remote.root), new LocalRemote(remote.root)], rounds: 100, turns: 20 };
});

describe("claims on S3 (s3rver)", () => {
  let peer: S3rverPeer;
  beforeAll(async () => {
    peer = await startS3rver();
  });
  afterAll(async () => {
    await peer?.stop();
  });
  const prefix = `locks-${randomBytes(4).toString("hex")}`;
  const s3 = () =>
    new S3Remote({
      endpoint: peer.endpoint,
      bucket: peer.bucket,
      accessKeyId: peer.accessKeyId,
      secretAccessKey: peer.secretAccessKey,
      prefix,
    });
  contentionSuite("S3", async () => ({ remotes: () => [s3(), s3()], rounds: 100, turns: 10 }));
});

const sambaSkip = skipReasonForTools(["smbd", "smbpasswd"]);
describe.skipIf(sambaSkip !== undefined)("claims on SMB (Samba)", () => {
  let peer: SambaPeer;
  const opened: SmbRemote[] = [];
  beforeAll(async () => {
    peer = await startSamba();
  });
  afterAll(() =>
    stopAll(
      () => Promise.all(opened.map((remote) => remote.close())),
      () => peer?.stop(),
    ),
  );
  const smb = () => {
    const remote = new SmbRemote({ host: peer.host, port: peer.port, share: peer.share, username: peer.username, password: peer.password });
    opened.push(remote);
    return remote;
  };
  contentionSuite("SMB", async () => ({ remotes: () => [smb(), smb()], rounds: 100, turns: 10 }));
});

describe("VM lock and restore lease (LOCAL)", () => {
  let remote: LocalRemote;
  beforeAll(async () => {
    remote = await localRemote();
  });

  it("writes its claim as <kind>-<token>.json under .cairn-locks/<vm> and deletes it on release", async () => {
    const vmUuid = randomUUID();
    const lock = await acquireVmLock(remote, vmUuid, "backup 20250131T220003Z of job j1", {
      ...FAST,
      owner: "run-1",
      holder: "host-a pid 1",
    });
    expect(lock.path).toBe(`xo-vm-backups/.cairn-locks/${vmUuid}/x-${lock.token}.json`);
    expect(lock.path).toBe(claimPath(vmUuid, "x", lock.token));
    const content = JSON.parse((await remote.readFile(lock.path)).toString()) as LockClaimContent;
    expect(content).toMatchObject({
      formatVersion: 1,
      kind: "x",
      token: lock.token,
      owner: "run-1",
      holder: "host-a pid 1",
      purpose: "backup 20250131T220003Z of job j1",
      maintenance: false,
      renewals: 0,
    });
    await lock.confirm();
    const renewed = JSON.parse((await remote.readFile(lock.path)).toString()) as LockClaimContent;
    expect(renewed.renewals).toBe(1);
    expect(renewed.acquiredAt).toBe(lock.acquiredAt.toISOString()); // remote time from the first renewal on
    await lock.release();
    await lock.release();
    expect(await claimNames(remote, vmUuid)).toEqual([]);
    expect(thrownBy(() => lock.assertHeld())).toBeInstanceOf(RepositoryError);
    expect(lock.signal.aborted).toBe(false); // release is not a loss
  });

  it("assertHeld does no I/O", async () => {
    const vmUuid = randomUUID();
    let calls = 0;
    const counting = new Proxy(remote, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          calls++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const lock = await acquireVmLock(counting, vmUuid, "clean", { ...FAST, maintenance: true });
    calls = 0;
    for (let i = 0; i < 1000; i++) lock.assertHeld();
    expect(calls).toBe(0);
    await lock.release();
  });

  it("refuses a second exclusive lock, naming who holds it, for what, since when (remote time)", async () => {
    const vmUuid = randomUUID();
    const held = await acquireVmLock(remote, vmUuid, "retention of job j1", {
      ...FAST,
      maintenance: true,
      owner: "run-1",
      holder: "host-a pid 1",
    });
    const error = await expectLocked(
      acquireVmLock(remote, vmUuid, "backup of job j2", FAST),
      /retention of job j1 holds the backups of VM/,
    );
    expect(error.message).toContain("host-a pid 1");
    expect(error.message).toContain("owner run-1");
    expect(error.message).toContain(held.acquiredAt.toISOString());
    expect(error.details).toMatchObject({
      path: held.path,
      owner: "run-1",
      holder: "host-a pid 1",
      purpose: "retention of job j1",
      since: held.acquiredAt.toISOString(),
    });
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${held.token}.json`]); // the loser withdrew its claim
    await held.release();
  });

  it("judges staleness by the remote's mtimes, not the judge's clock: a host 11 minutes ahead does not take over a live claim", async () => {
    const vmUuid = randomUUID();
    const holder = await acquireVmLock(remote, vmUuid, "backup of job j1", { ...FAST, owner: "run-1" });
    const ahead = () => new Date(Date.now() + 11 * MINUTE);
    await expectLocked(
      acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true, now: ahead }),
      /backup of job j1 holds/,
    );
    await expectLocked(acquireVmLock(remote, vmUuid, "clean", { ...FAST, maintenance: true, now: ahead, waitMs: 0 }));
    await holder.confirm(); // still held
    // Its claim not renewed for longer than the expiry by the remote's clock: now stale, even for a judge running behind.
    await age(remote, holder.path, LOCK_EXPIRY_MS + MINUTE);
    const behind = () => new Date(Date.now() - 11 * MINUTE);
    const taker = await acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true, now: behind });
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${taker.token}.json`]); // the stale claim was deleted
    await expectLocked(holder.confirm(), /claim file is gone/);
    await taker.release();
  });

  it("takes over the stale claim of a dead owner", async () => {
    const vmUuid = randomUUID();
    const dead = await acquireVmLock(remote, vmUuid, "backup of job j1", { ...FAST, owner: "run-dead" });
    const lease = await acquireVmLease(remote, vmUuid, "restore of job j1", { ...FAST, owner: "run-dead" });
    await age(remote, dead.path, LOCK_EXPIRY_MS + 1000);
    await age(remote, lease.path, LOCK_EXPIRY_MS + 1000);
    const claims = await liveClaims(remote, vmUuid, { includeStale: true });
    expect(claims.map((claim) => [claim.kind, claim.stale]).sort()).toEqual([
      ["r", true],
      ["x", true],
    ]);
    expect(await liveClaims(remote, vmUuid)).toEqual([]);
    const next = await acquireVmLock(remote, vmUuid, "clean", { ...FAST, maintenance: true, owner: "run-next" });
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${next.token}.json`]);
    await next.release();
  });

  it("takes over at once a claim this process released but could not delete (its remote was cut), and it alone", async () => {
    const vmUuid = randomUUID();
    // The remote refuses deletes while "cut": the release cannot take the claim back.
    let cut = false;
    const flaky = new Proxy(remote, {
      get(target, key) {
        const value = Reflect.get(target, key, target) as unknown;
        if (key === "delete") {
          return async (path: string) => {
            if (cut) throw new RemoteError({ code: "UNREACHABLE", remote: "cut", operation: "delete", path, detail: "cut" });
            return target.delete(path);
          };
        }
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as Remote;
    const first = await acquireVmLock(flaky, vmUuid, "backup of job j1", { ...FAST, owner: "run-cut" });
    cut = true;
    await first.release();
    cut = false;
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${first.token}.json`]);
    // Not renewed for a moment only, yet stale to this process, which released it (others wait for its expiry).
    const [seen] = await liveClaims(remote, vmUuid, { includeStale: true });
    expect([seen.token, seen.stale]).toEqual([first.token, true]);
    const next = await acquireVmLock(remote, vmUuid, "backup of job j1", { ...FAST, owner: "run-next" });
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${next.token}.json`]);
    await next.release();
  });
  it("a claim whose write landed but failed is deleted: failing attempts leave no claim behind", async () => {
    const vmUuid = randomUUID();
    // The server renamed the claim into place, then its answer (or the folder flush) failed: not a transient error.
    const landsThenFails = wrap(remote, {
      async writeFile(path: string, data: Uint8Array | string) {
        await remote.writeFile(path, data);
        throw new RemoteError({ code: "IO", remote: remote.name, operation: "write", path, detail: "the folder flush failed" });
      },
    });
    const error = await acquireVmLock(landsThenFails, vmUuid, "backup of job j1", FAST).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(RemoteError);
    expect(await claimNames(remote, vmUuid)).toEqual([]);
    const next = await acquireVmLock(remote, vmUuid, "backup of job j2", FAST);
    await next.release();
  });

  it("a contender whose withdrawal failed deletes its claim when it gives up or is cancelled", async () => {
    const vmUuid = randomUUID();
    // A holder already renewed once: not a contender that may withdraw, so a second one gives up after one attempt.
    const holder = await acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true });
    await holder.confirm();
    let refusals = 0;
    const refusesOneDelete = wrap(remote, {
      async delete(path: string) {
        if (refusals++ === 0) throw new RemoteError({ code: "IO", remote: remote.name, operation: "delete", path, detail: "refused once" });
        await remote.delete(path);
      },
    });
    await expectLocked(acquireVmLock(refusesOneDelete, vmUuid, "backup of job j2", FAST), /retention of job j1 holds/);
    expect(refusals).toBe(2);
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${holder.token}.json`]);

    refusals = 0;
    const cancel = new AbortController();
    const reason = new Error("the backup was cancelled");
    await expect(
      acquireVmLock(refusesOneDelete, vmUuid, "backup of job j3", {
        ...FAST,
        waitMs: 5 * MINUTE,
        onWait: () => cancel.abort(reason),
        signal: cancel.signal,
      }),
    ).rejects.toBe(reason);
    expect(refusals).toBe(2);
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${holder.token}.json`]);
    await holder.release();
  });

  it("releaseClaimsOfOwner deletes only that owner's claims not renewed for deadAfterMs (or stale), never a live one", async () => {
    const vmUuid = randomUUID();
    const mine = await acquireVmLock(remote, vmUuid, "backup of job j1", { ...FAST, owner: "run-1", holder: "same-host pid 1" });
    const other = await acquireVmLease(remote, vmUuid, "restore", { ...FAST, owner: "run-2", holder: "same-host pid 1" });
    expect(await releaseClaimsOfOwner(remote, vmUuid, "run-1", { deadAfterMs: MINUTE })).toEqual([]);
    expect(await releaseClaimsOfOwner(remote, vmUuid, "run-1")).toEqual([]);
    expect(await claimNames(remote, vmUuid)).toHaveLength(2);

    await age(remote, mine.path, 90_000);
    await age(remote, other.path, 90_000);
    expect(await releaseClaimsOfOwner(remote, vmUuid, "run-1")).toEqual([]); // not stale yet, no deadAfterMs
    const released = await releaseClaimsOfOwner(remote, vmUuid, "run-1", { deadAfterMs: MINUTE });
    expect(released.map((claim) => claim.token)).toEqual([mine.token]);
    expect(await claimNames(remote, vmUuid)).toEqual([`r-${other.token}.json`]); // same holder name, other owner: kept

    expect(await releaseClaimsOfOwner(remote, vmUuid, "run-2")).toEqual([]);
    await age(remote, other.path, LOCK_EXPIRY_MS);
    expect((await releaseClaimsOfOwner(remote, vmUuid, "run-2")).map((claim) => claim.token)).toEqual([other.token]);
    expect(await claimNames(remote, vmUuid)).toEqual([]);
  });

  it("a restore lease blocks a maintenance lock but coexists with a backup writer's lock and other leases", async () => {
    const vmUuid = randomUUID();
    const lease = await acquireVmLease(remote, vmUuid, "restore of 20250131T220003Z", FAST);
    await expectLocked(
      acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true }),
      /restore of 20250131T220003Z holds the backups/,
    );
    const backup = await acquireVmLock(remote, vmUuid, "backup of job j1", FAST);
    const second = await acquireVmLease(remote, vmUuid, "health check", FAST);
    await expectLocked(acquireVmLock(remote, vmUuid, "backup of job j2", FAST), /backup of job j1 holds/);
    const claims = await liveClaims(remote, vmUuid);
    expect(claims.map((claim) => [claim.kind, claim.purpose, claim.maintenance]).sort()).toEqual(
      [
        ["r", "health check", false],
        ["r", "restore of 20250131T220003Z", false],
        ["x", "backup of job j1", false],
      ].sort(),
    );
    await Promise.all([lease.release(), backup.release()]);
    await expectLocked(acquireVmLock(remote, vmUuid, "clean", { ...FAST, maintenance: true }), /health check holds/);
    await second.release();
    const clean = await acquireVmLock(remote, vmUuid, "clean", { ...FAST, maintenance: true });
    await clean.release();
  });

  it("a restore lease waits while a maintenance lock holds, saying who holds it, then gets in", async () => {
    const vmUuid = randomUUID();
    const retention = await acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true });
    const waiting = deferred<string>();
    const descriptions: string[] = [];
    const pending = acquireVmLease(remote, vmUuid, "restore of 20250131T220003Z", {
      ...FAST,
      onWait: (description) => {
        descriptions.push(description);
        waiting.resolve(description);
      },
    });
    expect(await waiting.promise).toMatch(new RegExp(`^retention of job j1 holds the backups of VM ${vmUuid} \\(`));
    await retention.release();
    const lease = await pending;
    lease.assertHeld();
    expect(descriptions).toHaveLength(1); // told once, not at every retry
    await lease.release();
  });

  it("a maintenance lock with waitMs waits for a backup writer to finish", async () => {
    const vmUuid = randomUUID();
    const backup = await acquireVmLock(remote, vmUuid, "backup of job j1", FAST);
    const pending = acquireVmLock(remote, vmUuid, "retention of job j1", {
      ...FAST,
      maintenance: true,
      waitMs: 5 * MINUTE,
      onWait: () => void backup.release(),
    });
    const retention = await pending;
    retention.assertHeld();
    await retention.release();
  });

  it("a lease's wait is cancelled by its signal, and gives up LOCKED after waitMs", async () => {
    const vmUuid = randomUUID();
    const retention = await acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true });
    const cancel = new AbortController();
    const reason = new Error("the restore was cancelled");
    await expect(
      acquireVmLease(remote, vmUuid, "restore", { ...FAST, signal: cancel.signal, onWait: () => cancel.abort(reason) }),
    ).rejects.toBe(reason);
    // waitMs on an injected clock: each wait advances it by the time waited.
    let clock = 0;
    const error = await expectLocked(
      acquireVmLease(remote, vmUuid, "restore", {
        ...FAST,
        waitMs: 10 * MINUTE,
        backoffMs: { min: 1000, max: 60_000 },
        monotonicNow: () => clock,
        sleep: async (ms) => {
          clock += ms;
        },
      }),
      /cannot read the backups of VM .*retention of job j1 holds/,
    );
    expect(clock).toBeGreaterThanOrEqual(10 * MINUTE);
    expect(error.details).toMatchObject({ purpose: "retention of job j1" });
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${retention.token}.json`]);
    await retention.release();
  });

  it("a holder whose renewals fail sees assertHeld throw and its signal abort while its claim is still live", async () => {
    const vmUuid = randomUUID();
    let failWrites = false;
    const flaky = wrap(remote, {
      async writeFile(path: string, data: Uint8Array | string) {
        if (failWrites) throw new RemoteError({ code: "IO", remote: remote.name, operation: "write", path, detail: "the disk went away" });
        await remote.writeFile(path, data);
      },
    });
    const expiryMs = 10 * MINUTE;
    const lock = await acquireVmLock(flaky, vmUuid, "retention of job j1", { maintenance: true, renewMs: 20, expiryMs, autoRenew: true });
    lock.assertHeld();
    failWrites = true;
    const reason = await aborted(lock.signal);
    expect(reason).toBeInstanceOf(RepositoryError);
    expect((reason as Error).message).toMatch(/could not be renewed .*the disk went away/);
    expect(thrownBy(() => lock.assertHeld())).toBe(reason);
    await expect(lock.confirm()).rejects.toBe(reason);
    // It stopped while its claim was still live by the remote's clock: nobody could have taken over yet.
    const [claim] = await liveClaims(remote, vmUuid);
    expect(claim.token).toBe(lock.token);
    expect(claim.ageMs).toBeLessThan(expiryMs);
    await expectLocked(acquireVmLock(remote, vmUuid, "clean", { ...FAST, maintenance: true }), /retention of job j1 holds/);
    await lock.release();
    expect(await claimNames(remote, vmUuid)).toEqual([]);
  });

  it("a holder whose renewal hangs stops by its monotonic clock before its claim can be judged stale, and a late renewal does not revive it", async () => {
    const vmUuid = randomUUID();
    let hang: ReturnType<typeof deferred<void>> | undefined;
    const slow = wrap(remote, {
      async writeFile(path: string, data: Uint8Array | string) {
        if (hang !== undefined) await hang.promise;
        await remote.writeFile(path, data);
      },
    });
    let clock = 1000;
    const expiryMs = 90_000;
    const lock = await acquireVmLock(slow, vmUuid, "retention of job j1", {
      maintenance: true,
      expiryMs,
      renewMs: 10_000,
      autoRenew: false,
      monotonicNow: () => clock,
    });
    hang = deferred();
    const confirming = lock.confirm();
    const outcome = confirming.then(
      () => undefined,
      (error: unknown) => error,
    );
    clock += expiryMs - expiryMs / 3; // exactly at the holding limit: still held
    lock.assertHeld();
    expect(lock.signal.aborted).toBe(false);
    clock += 1;
    const error = thrownBy(() => lock.assertHeld());
    expect(error).toBeInstanceOf(RepositoryError);
    expect((error as Error).message).toMatch(/last renewed 60 s ago by this process's clock/);
    expect(lock.signal.aborted).toBe(true);
    expect(lock.signal.reason).toBe(error);
    hang.resolve();
    hang = undefined;
    expect(await outcome).toBe(error);
    expect(thrownBy(() => lock.assertHeld())).toBe(error);
    await lock.release();
    expect(await claimNames(remote, vmUuid)).toEqual([]);
  });

  it("a holder whose claim was deleted behind its back loses it at the next check and does not re-create it", async () => {
    const vmUuid = randomUUID();
    const lock = await acquireVmLock(remote, vmUuid, "backup of job j1", FAST);
    await remote.delete(lock.path);
    await expectLocked(lock.confirm(), /claim file is gone/);
    expect(lock.signal.aborted).toBe(true);
    expect(await claimNames(remote, vmUuid)).toEqual([]);
    await lock.release();
  });

  it("tie rule: a holder stops when a conflicting claim acquired earlier stays live across two checks, not for a later one", async () => {
    const vmUuid = randomUUID();
    const lock = await acquireVmLock(remote, vmUuid, "retention of job j1", { ...FAST, maintenance: true });
    // A leftover of a contender that died mid-attempt (acquired later): the holder keeps its lock.
    const later = randomBytes(12).toString("hex");
    const laterAt = new Date(lock.acquiredAt.getTime() + 5000).toISOString();
    await remote.writeFile(
      claimPath(vmUuid, "x", later),
      JSON.stringify(forgedClaim({ kind: "x", token: later, renewals: 2, acquiredAt: laterAt })),
    );
    await lock.confirm();
    await lock.confirm();
    await lock.confirm();
    await remote.delete(claimPath(vmUuid, "x", later));
    // Another holder that acquired earlier (what a remote that broke consistent listing could produce): the later stops.
    const earlier = randomBytes(12).toString("hex");
    const acquiredAt = new Date(lock.acquiredAt.getTime() - MINUTE).toISOString();
    await remote.writeFile(
      claimPath(vmUuid, "r", earlier),
      JSON.stringify(forgedClaim({ kind: "r", token: earlier, renewals: 3, acquiredAt, purpose: "restore" })),
    );
    await lock.confirm(); // seen once: it may be a contender about to withdraw
    await expectLocked(lock.confirm(), /a conflicting claim acquired earlier is live too.*restore holds/);
    await lock.release();
    await remote.delete(claimPath(vmUuid, "r", earlier));
  });

  it("honours an old-format lock file: live by its own expiresAt against the remote's time, deleted once stale", async () => {
    const vmUuid = randomUUID();
    const legacyPath = vmLockPath(vmUuid);
    const legacy = (purpose: string, expiresAt: number) =>
      JSON.stringify({
        formatVersion: 1,
        owner: randomUUID(),
        holder: "old-host pid 42",
        purpose,
        acquiredAt: new Date().toISOString(),
        refreshedAt: new Date().toISOString(),
        expiresAt: new Date(expiresAt).toISOString(),
      });

    await remote.writeFile(legacyPath, legacy("backup 20250131T220003Z of job j1", Date.now() + 5 * MINUTE));
    await expectLocked(
      acquireVmLock(remote, vmUuid, "backup of job j2", FAST),
      /backup 20250131T220003Z of job j1 holds .*old-host pid 42.*old-format lock file/,
    );
    const lease = await acquireVmLease(remote, vmUuid, "restore", FAST); // an old backup writer does not exclude reads
    await lease.release();

    await remote.writeFile(legacyPath, legacy("retention of job j1", Date.now() + 5 * MINUTE));
    await expectLocked(acquireVmLease(remote, vmUuid, "restore", { ...FAST, waitMs: 0 }), /retention of job j1 holds/);
    expect((await liveClaims(remote, vmUuid)).map((claim) => [claim.legacy, claim.maintenance])).toEqual([[true, true]]);

    await remote.writeFile(legacyPath, legacy("retention of job j1", Date.now() - MINUTE));
    const lock = await acquireVmLock(remote, vmUuid, "clean", { ...FAST, maintenance: true });
    await expect(remote.stat(legacyPath)).rejects.toMatchObject({ code: "NOT_FOUND" });

    // An old lock file appearing while a claim is held (an old version of Cairn does not see claims): the holder stops.
    await remote.writeFile(legacyPath, legacy("backup of job j3", Date.now() + 5 * MINUTE));
    await expectLocked(lock.confirm(), /old version of Cairn took the old-format lock/);
    await lock.release();
    await remote.delete(legacyPath);
  });

  it("counts an unreadable claim as a live maintenance claim until it is stale by its mtime", async () => {
    const vmUuid = randomUUID();
    const token = randomBytes(12).toString("hex");
    const path = claimPath(vmUuid, "r", token);
    await remote.writeFile(path, "not json");
    await expectLocked(acquireVmLock(remote, vmUuid, "backup of job j1", FAST), /unreadable claim/);
    await age(remote, path, 11 * MINUTE);
    const lock = await acquireVmLock(remote, vmUuid, "backup of job j1", FAST);
    expect(await claimNames(remote, vmUuid)).toEqual([`x-${lock.token}.json`]);
    await lock.release();
  });

  it("refuses a renewal period that leaves no time to renew before the holding limit", async () => {
    await expect(acquireVmLock(remote, randomUUID(), "backup", { expiryMs: 3000, renewMs: 2500 })).rejects.toThrow(
      /renewMs must be positive and below two thirds of expiryMs/,
    );
  });
});
