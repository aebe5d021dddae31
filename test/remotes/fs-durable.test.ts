import { createWriteStream } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";

/**
 * The error rules of fs-durable.ts, for file systems this machine does not have: one that cannot
 * fsync a folder (EINVAL) and one without hard links (EPERM from link(2)). The failures are injected
 * into node:fs/promises; everything else runs on a real folder.
 */

const injected = vi.hoisted(() => ({ folderSyncError: undefined as string | undefined, linkError: undefined as string | undefined }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs/promises")>();
  const fail = (code: string) => Object.assign(new Error(`${code}: injected`), { code });
  return {
    ...real,
    open: async (...args: Parameters<typeof real.open>) => {
      const handle = await real.open(...args);
      const flags = args[1];
      if (typeof flags !== "number" || injected.folderSyncError === undefined) return handle;
      const code = injected.folderSyncError;
      return Object.assign(Object.create(handle) as typeof handle, { sync: () => Promise.reject(fail(code)), close: () => handle.close() });
    },
    link: async (...args: Parameters<typeof real.link>) => {
      if (injected.linkError !== undefined) throw fail(injected.linkError);
      return real.link(...args);
    },
  };
});

const { createFileExclusive, syncFolder, writebackBehind } = await import("../../server/remotes/fs-durable.js");

describe("fs-durable: file systems that lack a feature", () => {
  let base: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "cairn-fs-durable-"));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });
  beforeEach(() => {
    injected.folderSyncError = undefined;
    injected.linkError = undefined;
  });

  it("ignores EINVAL from fsync on a folder, and only that error", async () => {
    injected.folderSyncError = "EINVAL";
    await syncFolder(base);
    injected.folderSyncError = "EIO";
    await expect(syncFolder(base)).rejects.toMatchObject({ code: "EIO" });
  });

  it("creates exclusively with O_EXCL where link(2) is refused, leaving no temporary", async () => {
    injected.linkError = "EPERM";
    const path = join(base, "lock");
    expect(await createFileExclusive(path, join(base, ".lock.tmp-0123456789abcdef"), "first")).toBe(true);
    expect(await createFileExclusive(path, join(base, ".lock.tmp-fedcba9876543210"), "second")).toBe(false);
    expect(await readFile(path, "utf8")).toBe("first");
    expect(await readdir(base)).toEqual(["lock"]);
  });

  it("passes on a link(2) error that is not about missing hard links", async () => {
    injected.linkError = "EIO";
    await expect(createFileExclusive(join(base, "other"), join(base, ".other.tmp-0123456789abcdef"), "x")).rejects.toMatchObject({
      code: "EIO",
    });
    expect(await readdir(base)).toEqual(["lock"]);
  });
});

describe("writebackBehind: a file's data flushed while it is written", () => {
  const chunks = (count: number, size: number) => Array.from({ length: count }, (_, i) => Buffer.alloc(size, i));

  it("passes every byte through in order, flushing behind the writes, and ends once the last flush has returned", async () => {
    const base = await mkdtemp(join(tmpdir(), "cairn-writeback-"));
    try {
      const path = join(base, "file");
      const output = createWriteStream(path, { flush: true });
      const data = chunks(64, 16 * 1024);
      await pipeline(Readable.from(data), writebackBehind(output, 64 * 1024), output);
      expect((await readFile(path)).equals(Buffer.concat(data))).toBe(true);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("fails the stream with the error of a flush the file system refuses (it would not say so again at close)", async () => {
    // fdatasync(2) of a character device is EINVAL: a file system that cannot flush, without injecting anything.
    const output = createWriteStream("/dev/null");
    await expect(pipeline(Readable.from(chunks(64, 16 * 1024)), writebackBehind(output, 64 * 1024), output)).rejects.toMatchObject({
      code: "EINVAL",
    });
  });
});
