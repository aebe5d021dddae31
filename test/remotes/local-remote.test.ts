import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { testSource } from "./test-source.js";

describeRemoteConformance("LOCAL", { exclusiveCreateIsAtomic: true }, async () => {
  const folder = await mkdtemp(join(tmpdir(), "cairn-local-remote-"));
  return {
    remote: new LocalRemote(folder),
    twin: () => new LocalRemote(folder),
    dispose: () => rm(folder, { recursive: true, force: true }),
  };
});

/** The files under `folder` this process holds open (Linux: /proc/self/fd). */
async function openFilesUnder(folder: string): Promise<string[]> {
  const targets = await Promise.all((await readdir("/proc/self/fd")).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
  return targets.filter((target) => target.startsWith(`${folder}/`));
}

describe("LOCAL remote: its folder", () => {
  let base: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "cairn-local-folder-"));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it("refuses to open a missing folder, saying it will not create it", async () => {
    const remote = new LocalRemote(join(base, "not-mounted", "backups"));
    const error = await expectRemoteError(remote.open(), "NOT_FOUND");
    expect(error.message).toContain("never creates");
    await expectRemoteError(remote.writeFile("x.txt", "x"), "NOT_FOUND");
    expect(await readdir(base)).toEqual([]);
  });

  it("refuses a location that is a file", async () => {
    await writeFile(join(base, "a-file"), "x");
    await expectRemoteError(new LocalRemote(join(base, "a-file")).open(), "INVALID_CONFIG");
  });

  it("refuses a relative location", () => {
    expect(() => new LocalRemote("relative/backups")).toThrow(/INVALID_CONFIG/);
  });

  it("writes under a temporary name in the target folder and renames it when complete", async () => {
    await mkdir(join(base, "temp-name"));
    const remote = new LocalRemote(join(base, "temp-name"));
    const source = testSource(4 * 1024 * 1024, { gateAt: 1024 * 1024 });
    const writing = remote.writeStream("vdis/disk.vhd", source.stream);
    await source.gateReached;
    const during = await remote.list("vdis");
    expect(during).toHaveLength(1);
    expect(during[0]).toMatch(/^\.disk\.vhd\.tmp-[0-9a-f]{16}$/);
    expect(remote.isTemporaryName(during[0])).toBe(true);
    source.release();
    expect((await writing).bytes).toBe(4 * 1024 * 1024);
    expect(await remote.list("vdis")).toEqual(["disk.vhd"]);
  });

  it("a write cancelled while its temporary is still being opened leaves no temporary behind", async () => {
    await mkdir(join(base, "cancel-at-open"));
    const remote = new LocalRemote(join(base, "cancel-at-open"));
    // The source cancels the run as the pipeline first reads it: the temporary's open(2) is then still under way, and
    // the file it creates appears after the write was destroyed.
    for (let attempt = 0; attempt < 50; attempt++) {
      const cancel = new AbortController();
      const source = new Readable({
        read() {
          cancel.abort(new Error("run cancelled"));
          this.push(Buffer.alloc(64 * 1024));
        },
      });
      await expect(remote.writeStream("vdis/disk.vhd", source, { signal: cancel.signal })).rejects.toMatchObject({ name: "AbortError" });
      // Nothing of the write is left when it returns: no file, and no descriptor still open on one.
      expect(await openFilesUnder(join(base, "cancel-at-open"))).toEqual([]);
      expect(await remote.list("vdis")).toEqual([]);
    }
  });

  it("reports the file system's space figures", async () => {
    const space = await new LocalRemote(base).spaceInfo();
    expect(space.totalBytes).toBeGreaterThan(0);
    expect(space.freeBytes).toBeGreaterThan(0);
    expect(space.usedBytes).toBeGreaterThan(0);
    expect(space.freeBytes).toBeLessThanOrEqual(space.totalBytes ?? 0);
  });

  it("changes a file in place for an update: the same file (inode), no temporary, the bytes on disk after sync", async () => {
    await mkdir(join(base, "in-place"));
    const remote = new LocalRemote(join(base, "in-place"));
    await remote.writeFile("vdis/parent.vhd", Buffer.alloc(4096, 7));
    const before = await stat(join(base, "in-place", "vdis", "parent.vhd"));
    const file = await remote.openForUpdate("vdis/parent.vhd");
    await file.write(1024, Buffer.alloc(512, 9));
    await file.write(4096, Buffer.from("grown"));
    await file.sync();
    expect(await readdir(join(base, "in-place", "vdis"))).toEqual(["parent.vhd"]);
    await file.close();
    const after = await stat(join(base, "in-place", "vdis", "parent.vhd"));
    expect(after.ino).toBe(before.ino);
    const bytes = await readFile(join(base, "in-place", "vdis", "parent.vhd"));
    expect(bytes.length).toBe(4096 + 5);
    expect(bytes.subarray(1024, 1536).equals(Buffer.alloc(512, 9))).toBe(true);
    expect(bytes.subarray(1536, 4096).equals(Buffer.alloc(2560, 7))).toBe(true);
    expect(bytes.subarray(4096).toString()).toBe("grown");
  });

  it("says ALREADY_EXISTS when a file stands where a folder is needed", async () => {
    await mkdir(join(base, "in-the-way"));
    const remote = new LocalRemote(join(base, "in-the-way"));
    await remote.writeFile("blocker", "x");
    const error = await expectRemoteError(remote.writeFile("blocker/inside.txt", "x"), "ALREADY_EXISTS");
    expect(error.message).toContain("blocker/inside.txt");
    await expectRemoteError(remote.readFile(""), "INVALID_PATH");
    await expectRemoteError(remote.mkdir("blocker"), "ALREADY_EXISTS");
  });
});

// Root ignores permission bits, so an immutable folder (chattr +i) stands for a read-only one there.
const runningAsRoot = process.getuid?.() === 0;
describe.skipIf(runningAsRoot && skipReasonForTools(["chattr"]) !== undefined)("LOCAL remote: a folder it may not write", () => {
  let base: string;
  let locked: string;
  const lock = (on: boolean) =>
    runningAsRoot ? execFileSync("chattr", [on ? "+i" : "-i", locked]) : execFileSync("chmod", [on ? "0555" : "0755", locked]);
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "cairn-local-locked-"));
    locked = join(base, "locked");
    await mkdir(locked);
    lock(true);
  });
  afterAll(async () => {
    lock(false);
    await rm(base, { recursive: true, force: true });
  });

  it("fails to open with PERMISSION_DENIED, saying what to fix", async () => {
    const error = await expectRemoteError(new LocalRemote(locked).open(), "PERMISSION_DENIED");
    expect(error.message).toContain(locked);
    expect(error.message).toContain("writable");
  });

  it("refuses to open an immutable (or read-only) file for update with PERMISSION_DENIED, naming it", async () => {
    lock(false);
    await writeFile(join(locked, "frozen.vhd"), "keep");
    execFileSync(
      runningAsRoot ? "chattr" : "chmod",
      runningAsRoot ? ["+i", join(locked, "frozen.vhd")] : ["0444", join(locked, "frozen.vhd")],
    );
    try {
      const error = await expectRemoteError(new LocalRemote(locked).openForUpdate("frozen.vhd"), "PERMISSION_DENIED");
      expect(error.message).toContain("frozen.vhd");
    } finally {
      execFileSync(
        runningAsRoot ? "chattr" : "chmod",
        runningAsRoot ? ["-i", join(locked, "frozen.vhd")] : ["0644", join(locked, "frozen.vhd")],
      );
      await rm(join(locked, "frozen.vhd"));
      lock(true);
    }
  });

  it("fails a write into a locked sub-folder with PERMISSION_DENIED and leaves no temporary", async () => {
    lock(false);
    await mkdir(join(locked, "sub"));
    const remote = new LocalRemote(locked);
    await remote.open();
    execFileSync(runningAsRoot ? "chattr" : "chmod", runningAsRoot ? ["+i", join(locked, "sub")] : ["0555", join(locked, "sub")]);
    try {
      await expectRemoteError(remote.writeStream("sub/disk.vhd", testSource(1024 * 1024).stream), "PERMISSION_DENIED");
      await expectRemoteError(remote.writeFile("sub/meta.json", "{}"), "PERMISSION_DENIED");
      expect(await readdir(join(locked, "sub"))).toEqual([]);
    } finally {
      execFileSync(runningAsRoot ? "chattr" : "chmod", runningAsRoot ? ["-i", join(locked, "sub")] : ["0755", join(locked, "sub")]);
      lock(true);
    }
  });
});
