/**
 * The SHA-256 hasher's thread outlives its hash when the hash ended with its digest: the next hasher takes it instead of
 * starting a thread (20-30 ms of CPU each, at the start of every XVA written, verified or copied). Specified here: a reused
 * thread starts from an empty hash, a hasher stopped before its digest never hands its thread on, a closed hasher takes
 * nothing more, and only a few threads wait.
 */
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Sha256Worker, idleSha256Threads } from "../../server/formats/sha256-worker.js";

const sha256 = (...parts: Buffer[]) => {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
};

describe("Sha256Worker threads", () => {
  it("hands a thread whose hash ended to the next hasher, which starts from an empty hash", async () => {
    const first = new Sha256Worker();
    const a = randomBytes(3 * 1024 * 1024 + 17);
    await first.update(a);
    expect(await first.digest()).toEqual(sha256(a));
    first.close();

    const second = new Sha256Worker();
    const b = randomBytes(1024 * 1024 + 5);
    await second.update(b);
    expect(second.threadId).toBe(first.threadId);
    expect(await second.digest()).toEqual(sha256(b));
    second.close();
  });

  it("ends the thread of a hasher stopped before its digest: its queued bytes never reach another hash", async () => {
    const stopped = new Sha256Worker();
    await stopped.update(randomBytes(2 * 1024 * 1024 + 3));
    stopped.close();

    const next = new Sha256Worker();
    const data = randomBytes(1024 * 1024);
    await next.update(data);
    expect(next.threadId).not.toBe(stopped.threadId);
    expect(await next.digest()).toEqual(sha256(data));
    next.close();
  });

  it("fails a digest still on its way when the hasher is closed, and ends its thread", async () => {
    const hasher = new Sha256Worker();
    await hasher.update(randomBytes(4 * 1024 * 1024));
    const asked = hasher.digest();
    hasher.close();
    await expect(asked).rejects.toThrow(/closed/);
    const next = new Sha256Worker();
    expect(next.threadId).not.toBe(hasher.threadId);
    next.close();
  });

  it("refuses updates and digests once closed", async () => {
    const hasher = new Sha256Worker();
    await hasher.update(Buffer.from("abc"));
    expect(await hasher.digest()).toEqual(sha256(Buffer.from("abc")));
    hasher.close();
    await expect(hasher.update(Buffer.from("more"))).rejects.toThrow(/closed/);
    await expect(hasher.digest()).rejects.toThrow(/closed/);
  });

  it("keeps at most two threads waiting, however many hashes ended together", async () => {
    const hashers = Array.from({ length: 4 }, () => new Sha256Worker());
    const data = randomBytes(64 * 1024);
    const digests = await Promise.all(
      hashers.map(async (hasher) => {
        await hasher.update(data);
        return hasher.digest();
      }),
    );
    for (const digest of digests) expect(digest).toEqual(sha256(data));
    for (const hasher of hashers) hasher.close();
    expect(new Set(hashers.map((hasher) => hasher.threadId)).size).toBe(4);
    expect(idleSha256Threads()).toBe(2);
  });
});
