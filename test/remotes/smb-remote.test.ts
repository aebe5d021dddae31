import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmbRemote, type SmbRemoteOptions } from "../../server/remotes/smb-remote.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { startSamba, type SambaPeer } from "./samba-process.js";
import { SMB2, STATUS_PENDING, startSmbRecordingProxy, type SmbMessage } from "./smb-recording-proxy.js";
import { testSource } from "./test-source.js";

const skipReason = skipReasonForTools(["smbd", "smbpasswd"]);

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
