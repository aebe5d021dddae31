import { readFile, readdir, statfs } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { measureRemote } from "../../server/remotes/measure-remote.js";
import { SmbRemote, type SmbRemoteOptions } from "../../server/remotes/smb-remote.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { startSamba, type SambaPeer } from "./samba-process.js";
import { bytesAt, keystreamSource, sha256Of } from "./smb-keystream.js";
import { FLAG_ASYNC, SMB2, STATUS_PENDING, startSmbRecordingProxy, type SmbMessage } from "./smb-recording-proxy.js";
import { testSource } from "./test-source.js";

const skipReason = skipReasonForTools(["smbd", "smbpasswd"]);
const MIB = 1024 * 1024;

/** The most requests of `command` on `fileId` that were sent and not yet finally answered, at any moment. */
function mostInFlight(messages: readonly SmbMessage[], command: number, fileId: string): number {
  const open = new Set<bigint>();
  let most = 0;
  for (const entry of messages) {
    if (entry.command !== command) continue;
    if (entry.direction === "request" && entry.fileId === fileId) {
      open.add(entry.messageId);
      most = Math.max(most, open.size);
    } else if (entry.direction === "response" && entry.status !== STATUS_PENDING) {
      open.delete(entry.messageId);
    }
  }
  return most;
}

function optionsFor(peer: SambaPeer, extra: Partial<SmbRemoteOptions> = {}): SmbRemoteOptions {
  return { host: peer.host, port: peer.port, share: peer.share, username: peer.username, password: peer.password, ...extra };
}

/** The messages in order, each with its position. */
type Seen = SmbMessage & { at: number };

/** The handle a successful CREATE of a name matching `name` opened, at or after position `from`. */
function handleOf(messages: Seen[], name: RegExp, from = 0): string {
  for (const request of messages.filter((entry) => entry.at >= from && entry.direction === "request" && entry.command === SMB2.CREATE)) {
    if (!name.test(request.name ?? "")) continue;
    const answer = messages.find(
      (entry) => entry.direction === "response" && entry.messageId === request.messageId && entry.status !== STATUS_PENDING,
    );
    if (answer?.status === 0 && answer.fileId !== undefined) return answer.fileId;
  }
  throw new Error(`no successful CREATE of ${name} after position ${from}`);
}

/** The request of `command` on `fileId` (the first at or after `from`), with the server's final answer to it. */
function requestOn(messages: Seen[], command: number, fileId: string, from = 0): { request: Seen; status: number | undefined } {
  const request = messages.find(
    (entry) => entry.at >= from && entry.direction === "request" && entry.command === command && entry.fileId === fileId,
  );
  if (request === undefined) throw new Error(`no request ${command} on handle ${fileId} after position ${from}`);
  const answer = messages.find(
    (entry) => entry.direction === "response" && entry.messageId === request.messageId && entry.status !== STATUS_PENDING,
  );
  return { request, status: answer?.status };
}

describe.skipIf(skipReason !== undefined)("SMB remote against Samba", () => {
  describeRemoteConformance("SMB", { exclusiveCreateIsAtomic: true }, async () => {
    const peer = await startSamba();
    return { remote: new SmbRemote(optionsFor(peer)), twin: () => new SmbRemote(optionsFor(peer)), dispose: () => peer.stop() };
  });

  describe("SMB remote: its server and share", () => {
    let peer: SambaPeer;
    beforeAll(async () => {
      peer = await startSamba();
    });
    afterAll(async () => {
      await peer?.stop();
    });

    it("says PERMISSION_DENIED, without the password, for a wrong password", async () => {
      const remote = new SmbRemote(optionsFor(peer, { password: "wrong-password-123" }));
      const error = await expectRemoteError(remote.open(), "PERMISSION_DENIED");
      expect(error.message).not.toContain("wrong-password-123");
      expect(error.message).toContain("password");
    });

    it("says NOT_FOUND for a share that does not exist", async () => {
      const error = await expectRemoteError(new SmbRemote(optionsFor(peer, { share: "nothere" })).open(), "NOT_FOUND");
      expect(error.message).toContain("share name");
    });

    it("says UNREACHABLE, transient, when nothing listens on the port", async () => {
      const remote = new SmbRemote(optionsFor(peer, { port: 1 }));
      const error = await expectRemoteError(remote.open(), "UNREACHABLE");
      expect(error.transient).toBe(true);
    });

    it("says NOT_FOUND when the remote's folder is missing in the share", async () => {
      await expectRemoteError(new SmbRemote(optionsFor(peer, { folder: "missing/folder" })).open(), "NOT_FOUND");
    });

    it("removes the hidden temporary file of a failed write from the share's disk", async () => {
      const remote = new SmbRemote(optionsFor(peer));
      const source = testSource(3 * 1024 * 1024, { failAt: 2 * 1024 * 1024 });
      await expect(remote.writeStream("failed/disk.vhd", source.stream)).rejects.toThrow("failed on purpose");
      expect(await readdir(join(peer.shareFolder, "failed"))).toEqual([]);
      await remote.close();
    });

    describe("durability, as the wire shows it", () => {
      // Samba answers FLUSH with fsync(2) ("strict sync", on by default): source3/smbd/smb2_flush.c.
      it("flushes a written file after its last write and before closing and renaming it, then flushes its folder", async () => {
        const proxy = await startSmbRecordingProxy(peer.host, peer.port);
        const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
        try {
          await remote.mkdir("flushed");
          const start = proxy.messages.length;
          await remote.writeStream("flushed/disk.vhd", testSource(1024 * 1024).stream);
          const seen: Seen[] = proxy.messages.map((entry, at) => ({ ...entry, at }));
          const temporary = handleOf(seen, /^flushed\\\.disk\.vhd\.tmp-[0-9a-f]{16}$/, start);
          const writes = seen.filter(
            (entry) => entry.direction === "request" && entry.command === SMB2.WRITE && entry.fileId === temporary,
          );
          expect(writes.length).toBeGreaterThan(0);
          const flush = requestOn(seen, SMB2.FLUSH, temporary);
          expect(flush.request.at).toBeGreaterThan(writes[writes.length - 1].at);
          expect(flush.status, "the server's answer to FLUSH").toBe(0);
          const close = requestOn(seen, SMB2.CLOSE, temporary);
          expect(close.request.at).toBeGreaterThan(flush.request.at);
          const rename = seen.find(
            (entry) =>
              entry.direction === "request" && entry.command === SMB2.SET_INFO && entry.infoClass === 10 && entry.at > close.request.at,
          );
          expect(rename, "a rename after the close").toBeDefined();
          const folder = handleOf(seen, /^flushed$/, rename?.at);
          expect(requestOn(seen, SMB2.FLUSH, folder).status, "the server's answer to the folder's FLUSH").toBe(0);
          expect((await remote.readFile("flushed/disk.vhd")).length).toBe(1024 * 1024);
        } finally {
          await remote.close();
          await proxy.stop();
        }
      });

      it("flushes an exclusively created file before closing it", async () => {
        const proxy = await startSmbRecordingProxy(peer.host, peer.port);
        const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
        try {
          expect(await remote.writeFileExclusive("flushed/vm.lock", "owner")).toBe(true);
          const seen: Seen[] = proxy.messages.map((entry, at) => ({ ...entry, at }));
          const lock = handleOf(seen, /^flushed\\vm\.lock$/);
          const write = requestOn(seen, SMB2.WRITE, lock);
          const flush = requestOn(seen, SMB2.FLUSH, lock);
          const close = requestOn(seen, SMB2.CLOSE, lock);
          expect(flush.status).toBe(0);
          expect(write.request.at < flush.request.at && flush.request.at < close.request.at).toBe(true);
        } finally {
          await remote.close();
          await proxy.stop();
        }
      });
    });

    describe("a stock Samba: async I/O, interim answers, several requests in flight", () => {
      it("waits past the interim STATUS_PENDING answers to a large write, its flush and its read, byte-exact", async () => {
        const proxy = await startSmbRecordingProxy(peer.host, peer.port);
        const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
        try {
          const size = 64 * MIB + 4097;
          const source = keystreamSource(size);
          await remote.writeStream("pending/big.bin", source.stream);
          expect(await sha256Of(await remote.createReadStream("pending/big.bin"))).toBe(source.sha256);
          const interim = proxy.messages.filter((entry) => entry.direction === "response" && entry.status === STATUS_PENDING);
          // Samba's FLUSH is an fsync(2) of 64 MiB: it always takes longer than the 0.5 ms after which an interim answer goes out.
          expect(interim.length, "interim answers seen on the wire").toBeGreaterThan(0);
          expect(interim.some((entry) => entry.command === SMB2.FLUSH)).toBe(true);
          for (const entry of interim) {
            expect(entry.flags & FLAG_ASYNC, "an interim answer is async").toBe(FLAG_ASYNC);
            const finals = proxy.messages.filter(
              (other) => other.direction === "response" && other.messageId === entry.messageId && other.status !== STATUS_PENDING,
            );
            expect(
              finals.map((final) => final.status),
              "one final answer per request, a success",
            ).toEqual([0]);
          }
          const counted = Object.values(remote.connectionStats?.pending ?? {}).reduce((sum, count) => sum + count, 0);
          expect(counted).toBe(interim.length);
          expect(await readFile(join(peer.shareFolder, "pending", "big.bin")).then((bytes) => bytes.equals(bytesAt(0, size)))).toBe(true);
        } finally {
          await remote.close();
          await proxy.stop();
        }
      });

      it("keeps several 1 MiB WRITEs and READs in flight, within the negotiated sizes", async () => {
        const proxy = await startSmbRecordingProxy(peer.host, peer.port);
        const remote = new SmbRemote(optionsFor(peer, { port: proxy.port, requestsInFlight: 4 }));
        try {
          const size = 24 * MIB + 3;
          await remote.writeStream("inflight/disk.bin", keystreamSource(size).stream);
          await sha256Of(await remote.createReadStream("inflight/disk.bin"));
          const temporary = handleOf(
            proxy.messages.map((entry, at) => ({ ...entry, at })),
            /^inflight\\\.disk\.bin\.tmp-[0-9a-f]{16}$/,
          );
          const writes = proxy.messages.filter(
            (entry) => entry.direction === "request" && entry.command === SMB2.WRITE && entry.fileId === temporary,
          );
          expect(writes.map((entry) => entry.length)).toEqual([...Array(24).fill(MIB), 3]);
          expect(mostInFlight(proxy.messages, SMB2.WRITE, temporary)).toBeGreaterThan(1);
          expect(mostInFlight(proxy.messages, SMB2.WRITE, temporary)).toBeLessThanOrEqual(4);
          const reader = handleOf(
            proxy.messages.map((entry, at) => ({ ...entry, at })),
            /^inflight\\disk\.bin$/,
          );
          const reads = proxy.messages.filter(
            (entry) => entry.direction === "request" && entry.command === SMB2.READ && entry.fileId === reader,
          );
          expect(reads.reduce((sum, entry) => sum + (entry.length ?? 0), 0)).toBe(size);
          expect(Math.max(...reads.map((entry) => entry.length ?? 0))).toBe(MIB);
          expect(mostInFlight(proxy.messages, SMB2.READ, reader)).toBeGreaterThan(1);
        } finally {
          await remote.close();
          await proxy.stop();
        }
      });
    });

    describe("in-place updates on the wire", () => {
      it("writes past the end, cuts with SET_INFO end-of-file and syncs with FLUSH; the share's file shows each step", async () => {
        const proxy = await startSmbRecordingProxy(peer.host, peer.port);
        const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
        const onDisk = join(peer.shareFolder, "update-wire", "parent.vhd");
        try {
          await remote.writeFile("update-wire/parent.vhd", bytesAt(0, 3 * MIB));
          const file = await remote.openForUpdate("update-wire/parent.vhd");
          const seen: Seen[] = proxy.messages.map((entry, at) => ({ ...entry, at }));
          const handle = handleOf(seen, /^update-wire\\parent\.vhd$/);
          // A block past the end (a gap of zeros), then one over the middle, as a merge writes them.
          await file.write(4 * MIB + 11, bytesAt(100 * MIB, 2 * MIB));
          await file.write(MIB - 7, bytesAt(200 * MIB, 5000));
          expect(file.size).toBe(6 * MIB + 11);
          await file.sync();
          const flush = requestOn(
            proxy.messages.map((entry, at) => ({ ...entry, at })),
            SMB2.FLUSH,
            handle,
          );
          expect(flush.status, "the server's answer to FLUSH").toBe(0);
          const expected = Buffer.concat([bytesAt(0, 3 * MIB), Buffer.alloc(MIB + 11), bytesAt(100 * MIB, 2 * MIB)]);
          bytesAt(200 * MIB, 5000).copy(expected, MIB - 7);
          expect((await readFile(onDisk)).equals(expected)).toBe(true);
          expect((await file.read(4 * MIB, 4096)).equals(expected.subarray(4 * MIB, 4 * MIB + 4096))).toBe(true);
          await file.truncate(2 * MIB + 1);
          const truncate = proxy.messages.find(
            (entry) =>
              entry.direction === "request" && entry.command === SMB2.SET_INFO && entry.fileId === handle && entry.infoClass === 20,
          );
          expect(truncate, "SET_INFO FileEndOfFileInformation").toBeDefined();
          await file.sync();
          await file.close();
          expect((await readFile(onDisk)).equals(expected.subarray(0, 2 * MIB + 1))).toBe(true);
          expect((await remote.stat("update-wire/parent.vhd")).size).toBe(2 * MIB + 1);
        } finally {
          await remote.close();
          await proxy.stop();
        }
      });

      it("refuses a folder with NOT_FOUND, and a missing file with NOT_FOUND", async () => {
        const remote = new SmbRemote(optionsFor(peer));
        try {
          await remote.mkdir("update-folder/sub");
          await expectRemoteError(remote.openForUpdate("update-folder/sub"), "NOT_FOUND");
          await expectRemoteError(remote.openForUpdate("update-folder/none.vhd"), "NOT_FOUND");
        } finally {
          await remote.close();
        }
      });
    });

    it("reports the share's free and total space as the server's file system has them", async () => {
      const remote = new SmbRemote(optionsFor(peer));
      try {
        const space = await remote.spaceInfo();
        const disk = await statfs(peer.shareFolder);
        expect(space.totalBytes).toBe(disk.blocks * disk.bsize);
        // Other processes write to the same disk meanwhile: the free figure is only close.
        expect(Math.abs((space.freeBytes ?? 0) - disk.bavail * disk.bsize)).toBeLessThan(2 * 1024 ** 3);
        expect(space.usedBytes).toBe((space.totalBytes ?? 0) - (space.freeBytes ?? 0));
        // What testRemote shows: rates and, now, the free space.
        const measured = await measureRemote(remote);
        expect(measured.ok).toBe(true);
        expect(measured.space.freeBytes).toBeGreaterThan(0);
        expect(measured.space.totalBytes).toBe(space.totalBytes);
      } finally {
        await remote.close();
      }
    });

    it("names the kind, host, port, share, folder and path in its errors", async () => {
      const setup = new SmbRemote(optionsFor(peer));
      await setup.mkdir("named");
      await setup.close();
      const remote = new SmbRemote(optionsFor(peer, { folder: "named" }));
      try {
        const error = await expectRemoteError(remote.stat("no/such.vhd"), "NOT_FOUND");
        expect(error.message).toContain(`SMB remote "//${peer.host}:${peer.port}/${peer.share}/named"`);
        expect(error.message).toContain('"no/such.vhd"');
        expect(error.message).not.toContain(peer.password);
      } finally {
        await remote.close();
      }
    });

    it("gives up on a server that stops answering after its time limit (UNREACHABLE), then connects afresh", async () => {
      const proxy = await startSmbRecordingProxy(peer.host, peer.port);
      const remote = new SmbRemote(optionsFor(peer, { port: proxy.port, timeoutMs: 8000 }));
      try {
        await remote.writeFile("silent/file.txt", "before");
        proxy.holdResponses(true);
        const error = await expectRemoteError(remote.readFile("silent/file.txt"), "UNREACHABLE");
        expect(error.transient).toBe(true);
        expect(error.message).toContain("no answer");
        proxy.holdResponses(false);
        expect((await remote.readFile("silent/file.txt")).toString()).toBe("before");
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });

    it("fails a write whose server goes away mid-transfer with UNREACHABLE, leaving nothing under the final name", async () => {
      const proxy = await startSmbRecordingProxy(peer.host, peer.port);
      const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
      try {
        const source = testSource(16 * MIB, { gateAt: 4 * MIB });
        const writing = remote.writeStream("vanishing/disk.vhd", source.stream);
        await source.gateReached;
        await proxy.stop();
        source.release();
        const error = await expectRemoteError(writing, "UNREACHABLE");
        expect(error.transient).toBe(true);
        expect(error.message).toContain('"vanishing/disk.vhd"');
        expect(
          await readdir(join(peer.shareFolder, "vanishing")).then((names) => names.filter((name) => !remote.isTemporaryName(name))),
        ).toEqual([]);
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });

    it("stores files under the folder inside the share, through a temporary name", async () => {
      const setup = new SmbRemote(optionsFor(peer));
      await setup.mkdir("site-a");
      const remote = new SmbRemote(optionsFor(peer, { folder: "site-a" }));
      const source = testSource(2 * 1024 * 1024, { gateAt: 1024 * 1024 });
      const writing = remote.writeStream("vdis/disk.vhd", source.stream);
      await source.gateReached;
      const during = await readdir(join(peer.shareFolder, "site-a", "vdis"));
      expect(during).toHaveLength(1);
      expect(remote.isTemporaryName(during[0])).toBe(true);
      source.release();
      await writing;
      expect(await readdir(join(peer.shareFolder, "site-a", "vdis"))).toEqual(["disk.vhd"]);
      await Promise.all([setup.close(), remote.close()]);
    });
  });
});
