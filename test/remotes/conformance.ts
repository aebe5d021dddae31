import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { measureRemote } from "../../server/remotes/measure-remote.js";
import { RemoteError, type RemoteErrorCode } from "../../server/remotes/remote-error.js";
import type { Remote } from "../../server/remotes/remote.js";
import { digestStream, testSource } from "./test-source.js";

/** A remote under test, and how to dispose of it and what stands behind it. */
export interface RemoteFixture {
  remote: Remote;
  /** Another remote on the same storage with its own connection (another client, another server process). */
  twin(): Remote;
  dispose(): Promise<void>;
}

/** What a kind promises beyond the common contract. */
export interface KindTraits {
  /** Whether concurrent exclusive creates of one name give exactly one `true` (see Remote.writeFileExclusive). */
  exclusiveCreateIsAtomic: boolean;
}

const MIB = 1024 * 1024;

/** Awaits `promise`, expecting a RemoteError with `code`; returns it for further checks. */
export async function expectRemoteError(promise: Promise<unknown>, code: RemoteErrorCode): Promise<RemoteError> {
  const outcome = await promise.then(
    (value: unknown) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!("error" in outcome)) throw new Error(`expected a RemoteError ${code}, but the call succeeded`);
  expect(outcome.error).toBeInstanceOf(RemoteError);
  expect((outcome.error as RemoteError).code, (outcome.error as Error).message).toBe(code);
  return outcome.error as RemoteError;
}

/**
 * The contract of `server/remotes/remote.ts`, run against every kind of remote. Each test works in
 * its own folder, so the suite can share one remote.
 */
export function describeRemoteConformance(kind: string, traits: KindTraits, makeFixture: () => Promise<RemoteFixture>): void {
  describe(`${kind} remote: the Remote contract`, () => {
    let fixture: RemoteFixture;
    let remote: Remote;
    beforeAll(async () => {
      fixture = await makeFixture();
      remote = fixture.remote;
      await remote.open();
    });
    afterAll(async () => {
      await remote?.close();
      await fixture?.dispose();
    });

    it("opens and closes idempotently, and works again after a close", async () => {
      await Promise.all([remote.open(), remote.open()]);
      await remote.close();
      await remote.close();
      await remote.writeFile("lifecycle/after-close.txt", "again");
      expect((await remote.readFile("lifecycle/after-close.txt")).toString()).toBe("again");
    });

    it("round-trips a 20 MiB stream byte for byte, pausing the source and never buffering the whole", async () => {
      const size = 20 * MIB;
      const source = testSource(size);
      const { bytes } = await remote.writeStream("round-trip/disk.vhd", source.stream, { sizeHint: size });
      expect(bytes).toBe(size);
      expect(source.refusedPushes).toBeGreaterThan(0);
      expect((await remote.stat("round-trip/disk.vhd")).size).toBe(size);
      const read = await digestStream(await remote.createReadStream("round-trip/disk.vhd"));
      expect(read.bytes).toBe(size);
      expect(read.digest.equals(source.digest())).toBe(true);
      expect(read.maxBuffered).toBeLessThan(4 * MIB);
    });

    it("writes and reads small files, replacing an existing one", async () => {
      await remote.writeFile("small/meta.json", '{"v":1}');
      await remote.writeFile("small/meta.json", new Uint8Array(Buffer.from('{"v":2}')));
      expect((await remote.readFile("small/meta.json")).toString()).toBe('{"v":2}');
      await remote.writeFile("small/empty", "");
      expect((await remote.readFile("small/empty")).length).toBe(0);
      expect((await remote.stat("small/empty")).size).toBe(0);
      const stat = await remote.stat("small/meta.json");
      expect(stat.size).toBe(7);
      expect(Math.abs(stat.mtime.getTime() - Date.now())).toBeLessThan(60_000);
    });

    describe("ranged reads", () => {
      const content = randomBytes(MIB + 123);
      beforeAll(async () => {
        await remote.writeFile("ranges/file.bin", content);
      });
      const read = async (range: { start?: number; end?: number }) =>
        Buffer.concat(await (await remote.createReadStream("ranges/file.bin", range)).toArray());

      it("streams exactly the inclusive range asked for", async () => {
        expect((await read({ start: 10, end: 19 })).equals(content.subarray(10, 20))).toBe(true);
        expect((await read({ end: 0 })).equals(content.subarray(0, 1))).toBe(true);
        expect((await read({ start: content.length - 5 })).equals(content.subarray(-5))).toBe(true);
        expect((await read({ start: 1000, end: MIB + 50 })).equals(content.subarray(1000, MIB + 51))).toBe(true);
      });

      it("clamps an end past the file and gives nothing for a start past it", async () => {
        expect((await read({ start: content.length - 3, end: content.length + 100 })).equals(content.subarray(-3))).toBe(true);
        expect((await read({ start: content.length + 10 })).length).toBe(0);
      });

      it("refuses a negative or inverted range", async () => {
        await expectRemoteError(remote.createReadStream("ranges/file.bin", { start: -1 }), "INVALID_ARGUMENT");
        await expectRemoteError(remote.createReadStream("ranges/file.bin", { start: 10, end: 9 }), "INVALID_ARGUMENT");
      });

      it("reads at any offset through a random-access handle, refusing reads past the end", async () => {
        const file = await remote.openRandomAccess("ranges/file.bin");
        expect(file.size).toBe(content.length);
        expect((await file.read(MIB, 123)).equals(content.subarray(MIB))).toBe(true);
        expect((await file.read(512, 4096)).equals(content.subarray(512, 4608))).toBe(true);
        expect((await file.read(7, 0)).length).toBe(0);
        await expectRemoteError(file.read(MIB, 124), "INVALID_ARGUMENT");
        await expectRemoteError(file.read(-1, 1), "INVALID_ARGUMENT");
        await file.close();
        await file.close();
        await expectRemoteError(file.read(0, 1), "INVALID_ARGUMENT");
      });
    });

    describe("in-place updates (openForUpdate, on the kinds that offer it)", () => {
      /** The remote's openForUpdate, or a skip of this test on a kind without it (S3). */
      const updatable = (skip: () => void): NonNullable<Remote["openForUpdate"]> => {
        if (!remote.openForUpdate) skip();
        return (remote.openForUpdate as NonNullable<Remote["openForUpdate"]>).bind(remote);
      };

      it("reads and writes at any offset, grows the file past its end with zeros in the gap, and keeps its size", async (context) => {
        const openForUpdate = updatable(() => context.skip());
        const content = randomBytes(3 * MIB + 17);
        await remote.writeFile("update/file.bin", content);
        const file = await openForUpdate("update/file.bin");
        try {
          expect(file.size).toBe(content.length);
          expect((await file.read(MIB - 5, 4096)).equals(content.subarray(MIB - 5, MIB - 5 + 4096))).toBe(true);
          // A write larger than one protocol request, across request boundaries, at an odd offset.
          const patch = randomBytes(2 * MIB + 3);
          await file.write(12_345, patch);
          patch.copy(content, 12_345);
          expect(file.size).toBe(content.length);
          const tail = Buffer.from("appended after a gap");
          await file.write(content.length + 1000, tail);
          expect(file.size).toBe(content.length + 1000 + tail.length);
          expect((await file.read(content.length, 1000)).equals(Buffer.alloc(1000))).toBe(true);
          // Read back through the same handle, across the patch's edges.
          expect((await file.read(12_340, 2 * MIB + 20)).equals(content.subarray(12_340, 12_360 + 2 * MIB))).toBe(true);
          await file.sync();
          await file.write(0, new Uint8Array());
        } finally {
          await file.close();
        }
        const expected = Buffer.concat([content, Buffer.alloc(1000), Buffer.from("appended after a gap")]);
        const stored = await remote.readFile("update/file.bin");
        expect(stored.length).toBe(expected.length);
        expect(stored.equals(expected)).toBe(true);
      });

      it("shows synced writes to another connection while the file is still open", async (context) => {
        const openForUpdate = updatable(() => context.skip());
        await remote.writeFile("update/shared.bin", Buffer.alloc(8192, 1));
        const file = await openForUpdate("update/shared.bin");
        const twin = fixture.twin();
        try {
          await file.write(4096, Buffer.alloc(512, 2));
          await file.sync();
          const seen = await twin.openRandomAccess("update/shared.bin");
          try {
            expect((await seen.read(4096, 512)).equals(Buffer.alloc(512, 2))).toBe(true);
            expect((await seen.read(4608, 512)).equals(Buffer.alloc(512, 1))).toBe(true);
          } finally {
            await seen.close();
          }
        } finally {
          await file.close();
          await twin.close();
        }
      });

      it("cuts and extends the file, refusing reads past its size", async (context) => {
        const openForUpdate = updatable(() => context.skip());
        const content = randomBytes(100_000);
        await remote.writeFile("update/cut.bin", content);
        const file = await openForUpdate("update/cut.bin");
        try {
          await file.truncate(60_000);
          expect(file.size).toBe(60_000);
          await expectRemoteError(file.read(59_999, 2), "INVALID_ARGUMENT");
          await expectRemoteError(file.read(-1, 1), "INVALID_ARGUMENT");
          await file.truncate(70_000);
          expect(file.size).toBe(70_000);
          expect((await file.read(59_000, 11_000)).equals(Buffer.concat([content.subarray(59_000, 60_000), Buffer.alloc(10_000)]))).toBe(
            true,
          );
          await file.sync();
        } finally {
          await file.close();
        }
        expect((await remote.stat("update/cut.bin")).size).toBe(70_000);
      });

      it("closes idempotently and refuses calls after close with INVALID_ARGUMENT", async (context) => {
        const openForUpdate = updatable(() => context.skip());
        await remote.writeFile("update/closed.bin", "0123456789");
        const file = await openForUpdate("update/closed.bin");
        await file.close();
        await file.close();
        await expectRemoteError(file.read(0, 1), "INVALID_ARGUMENT");
        await expectRemoteError(file.write(0, Buffer.from("x")), "INVALID_ARGUMENT");
        await expectRemoteError(file.truncate(1), "INVALID_ARGUMENT");
        await expectRemoteError(file.sync(), "INVALID_ARGUMENT");
        expect((await remote.readFile("update/closed.bin")).toString()).toBe("0123456789");
      });

      it("answers NOT_FOUND for a missing file and for a folder, and INVALID_PATH for a bad path", async (context) => {
        const openForUpdate = updatable(() => context.skip());
        const error = await expectRemoteError(openForUpdate("update/missing.bin"), "NOT_FOUND");
        expect(error.message).toContain("update/missing.bin");
        expect(error.message).toContain(remote.name);
        await remote.writeFile("update/folder/inside.bin", "x");
        await expectRemoteError(openForUpdate("update/folder"), "NOT_FOUND");
        await expectRemoteError(openForUpdate("../escape"), "INVALID_PATH");
        expect(await remote.list("update/folder")).toEqual(["inside.bin"]);
      });
    });

    describe("atomic writes", () => {
      it("leaves the previous file and no temporary when the source fails halfway", async () => {
        await remote.writeFile("atomic/disk.vhd", "previous");
        const failure = new Error("export connection dropped");
        const source = testSource(12 * MIB, { failAt: 10 * MIB, failure });
        await expect(remote.writeStream("atomic/disk.vhd", source.stream)).rejects.toBe(failure);
        expect((await remote.readFile("atomic/disk.vhd")).toString()).toBe("previous");
        expect(await remote.list("atomic")).toEqual(["disk.vhd"]);
      });

      it("leaves nothing under the final name when the source fails before the end", async () => {
        const source = testSource(2 * MIB, { failAt: MIB });
        await expect(remote.writeStream("atomic-new/disk.vhd", source.stream)).rejects.toThrow("failed on purpose");
        await expectRemoteError(remote.stat("atomic-new/disk.vhd"), "NOT_FOUND");
        expect(await remote.list("atomic-new", { recursive: true })).toEqual([]);
      });

      it("stops, cleans up and rejects with an AbortError when the signal fires", async () => {
        const controller = new AbortController();
        const source = testSource(64 * MIB, { gateAt: 9 * MIB });
        const writing = remote.writeStream("aborted/disk.vhd", source.stream, { signal: controller.signal });
        await source.gateReached;
        controller.abort(new Error("run cancelled"));
        await expect(writing).rejects.toMatchObject({ name: "AbortError" });
        expect(source.stream.destroyed).toBe(true);
        await expectRemoteError(remote.stat("aborted/disk.vhd"), "NOT_FOUND");
        expect(await remote.list("aborted", { recursive: true })).toEqual([]);
      });

      it("rejects at once with an AbortError when the signal already fired", async () => {
        await expect(remote.writeStream("aborted-early/x", testSource(MIB).stream, { signal: AbortSignal.abort() })).rejects.toMatchObject({
          name: "AbortError",
        });
        // A signal aborted with a reason of its own (a run's cancel) still gives an AbortError, the reason as its cause.
        const reason = new Error("run cancelled");
        const error = await remote.writeStream("aborted-early/x", testSource(MIB).stream, { signal: AbortSignal.abort(reason) }).then(
          () => undefined,
          (thrown: unknown) => thrown as Error,
        );
        expect(error).toMatchObject({ name: "AbortError" });
        expect(error?.cause).toBe(reason);
        expect(await remote.list("aborted-early")).toEqual([]);
      });
    });

    describe("listing", () => {
      beforeAll(async () => {
        await remote.writeFile("tree/a/one.txt", "1");
        await remote.writeFile("tree/a/deep/two.txt", "2");
        await remote.writeFile("tree/three.txt", "3");
        await remote.writeFile("tree-sibling/four.txt", "4");
      });

      it("lists the names in a folder, sorted, files and sub-folders alike", async () => {
        expect(await remote.list("tree")).toEqual(["a", "three.txt"]);
        expect(await remote.list("tree/a/")).toEqual(["deep", "one.txt"]);
        expect(await remote.list("")).toEqual(expect.arrayContaining(["tree", "tree-sibling"]));
      });

      it("lists every file under a folder recursively, as relative paths", async () => {
        expect(await remote.list("tree", { recursive: true })).toEqual(["a/deep/two.txt", "a/one.txt", "three.txt"]);
      });

      it("gives an empty list for a missing folder", async () => {
        expect(await remote.list("no-such-folder")).toEqual([]);
        expect(await remote.list("no-such-folder", { recursive: true })).toEqual([]);
      });
    });

    it("renames a file, replacing the target and creating its folders", async () => {
      await remote.writeFile("rename/from.txt", "moved");
      await remote.writeFile("rename/elsewhere/to.txt", "old");
      await remote.rename("rename/from.txt", "rename/elsewhere/to.txt");
      expect((await remote.readFile("rename/elsewhere/to.txt")).toString()).toBe("moved");
      await expectRemoteError(remote.stat("rename/from.txt"), "NOT_FOUND");
      await remote.rename("rename/elsewhere/to.txt", "rename/new/folder/to.txt");
      expect((await remote.readFile("rename/new/folder/to.txt")).toString()).toBe("moved");
      await expectRemoteError(remote.rename("rename/missing.txt", "rename/x.txt"), "NOT_FOUND");
    });

    describe("exclusive create", () => {
      it("creates a file only where nothing is, returning false and leaving the existing file otherwise", async () => {
        expect(await remote.writeFileExclusive("exclusive/new/lock.json", '{"owner":"a"}')).toBe(true);
        expect((await remote.readFile("exclusive/new/lock.json")).toString()).toBe('{"owner":"a"}');
        expect(await remote.writeFileExclusive("exclusive/new/lock.json", '{"owner":"b"}')).toBe(false);
        expect((await remote.readFile("exclusive/new/lock.json")).toString()).toBe('{"owner":"a"}');
        await remote.writeFile("exclusive/plain.json", "written");
        expect(await remote.writeFileExclusive("exclusive/plain.json", new Uint8Array(Buffer.from("other")))).toBe(false);
        expect((await remote.readFile("exclusive/plain.json")).toString()).toBe("written");
        expect(await remote.writeFileExclusive("exclusive/empty", "")).toBe(true);
        expect((await remote.stat("exclusive/empty")).size).toBe(0);
        expect((await remote.list("exclusive/new")).filter((name) => remote.isTemporaryName(name))).toEqual([]);
        await remote.delete("exclusive/new/lock.json");
        expect(await remote.writeFileExclusive("exclusive/new/lock.json", '{"owner":"c"}')).toBe(true);
        await expectRemoteError(remote.writeFileExclusive("../escape", "x"), "INVALID_PATH");
      });

      it(
        traits.exclusiveCreateIsAtomic
          ? "gives true to exactly one of two concurrent contenders, for 100 pairs at once over two connections"
          : "gives true to at least one of two concurrent contenders, whose content is kept (exclusivity is not guaranteed on this kind)",
        async () => {
          const twin = fixture.twin();
          try {
            const pairs = Array.from({ length: 100 }, (_, index) => `exclusive-race/pair-${String(index).padStart(3, "0")}.lock`);
            const outcomes = await Promise.all(
              pairs.map(async (path) => {
                const [first, second] = await Promise.all([
                  remote.writeFileExclusive(path, "first"),
                  twin.writeFileExclusive(path, "second"),
                ]);
                return { path, first, second };
              }),
            );
            for (const { path, first, second } of outcomes) {
              const content = (await remote.readFile(path)).toString();
              if (traits.exclusiveCreateIsAtomic) {
                expect(first !== second, `${path}: first ${first}, second ${second}`).toBe(true);
                expect(content, path).toBe(first ? "first" : "second");
              } else {
                expect(first || second, path).toBe(true);
                expect([first ? "first" : undefined, second ? "second" : undefined], path).toContain(content);
              }
            }
            expect(await remote.list("exclusive-race")).toEqual(pairs.map((path) => path.slice("exclusive-race/".length)));
          } finally {
            await twin.close();
          }
        },
      );
    });

    it("deletes a file, and deleting a missing file succeeds", async () => {
      await remote.writeFile("delete/file.txt", "x");
      await remote.delete("delete/file.txt");
      await expectRemoteError(remote.stat("delete/file.txt"), "NOT_FOUND");
      await remote.delete("delete/file.txt");
    });

    it("deletes a whole tree but not a sibling sharing its name as a prefix", async () => {
      await remote.writeFile("doomed/x.txt", "x");
      await remote.writeFile("doomed/y/z.txt", "z");
      await remote.writeFile("doomed-not/keep.txt", "keep");
      await remote.deleteTree("doomed");
      expect(await remote.list("doomed", { recursive: true })).toEqual([]);
      expect(await remote.list("doomed-not")).toEqual(["keep.txt"]);
      await remote.deleteTree("doomed");
      await expectRemoteError(remote.deleteTree(""), "INVALID_PATH");
    });

    it("creates folders idempotently", async () => {
      await remote.mkdir("made/here");
      await remote.mkdir("made/here");
      await remote.writeFile("made/here/file.txt", "ok");
      expect(await remote.list("made/here")).toEqual(["file.txt"]);
    });

    it("answers NOT_FOUND, naming the remote and the path, for a missing file", async () => {
      const error = await expectRemoteError(remote.stat("missing/file.vhd"), "NOT_FOUND");
      expect(error.message).toContain("missing/file.vhd");
      expect(error.message).toContain(remote.name);
      expect(error.transient).toBe(false);
      await expectRemoteError(remote.readFile("missing/file.vhd"), "NOT_FOUND");
      await expectRemoteError(remote.createReadStream("missing/file.vhd"), "NOT_FOUND");
      await expectRemoteError(remote.openRandomAccess("missing/file.vhd"), "NOT_FOUND");
    });

    it.each(["../escape", "/etc/passwd", "a/../b", "a\0b", "", "a//b", "./a", "a\\b"])(
      "refuses the path %j with INVALID_PATH before any I/O",
      async (path) => {
        await expectRemoteError(remote.writeFile(path, "x"), "INVALID_PATH");
        await expectRemoteError(remote.readFile(path), "INVALID_PATH");
        await expectRemoteError(remote.stat(path), "INVALID_PATH");
        await expectRemoteError(remote.delete(path), "INVALID_PATH");
        await expectRemoteError(remote.rename("x", path), "INVALID_PATH");
        if (path !== "") await expectRemoteError(remote.list(path), "INVALID_PATH");
      },
    );

    it("recognises temporary names and only those", () => {
      expect(remote.isTemporaryName(".disk.vhd.tmp-0123456789abcdef")).toBe(true);
      expect(remote.isTemporaryName("vdis/job/.disk.vhd.tmp-0123456789abcdef")).toBe(true);
      expect(remote.isTemporaryName("disk.vhd")).toBe(false);
      expect(remote.isTemporaryName(".disk.vhd.tmp-xyz")).toBe(false);
      expect(remote.isTemporaryName(".hidden")).toBe(false);
    });

    it("reports space figures as non-negative numbers or not at all", async () => {
      const space = await remote.spaceInfo();
      for (const value of [space.freeBytes, space.usedBytes, space.totalBytes]) {
        if (value !== undefined) expect(value).toBeGreaterThanOrEqual(0);
      }
    });

    it("measures write and read rates with a verified test file, leaving nothing behind", async () => {
      const before = await remote.list("");
      const result = await measureRemote(remote, { sizeBytes: 4 * MIB });
      expect(result.error).toBeUndefined();
      expect(result.ok).toBe(true);
      expect(result.writeBytesPerSecond).toBeGreaterThan(0);
      expect(result.readBytesPerSecond).toBeGreaterThan(0);
      expect(result.testedAt).toBeInstanceOf(Date);
      expect(await remote.list("")).toEqual(before);
    });
  });
}
