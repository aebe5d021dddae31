import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmbRemote, type SmbRemoteOptions } from "../../server/remotes/smb-remote.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { startSamba, type SambaPeer } from "./samba-process.js";
import { testSource } from "./test-source.js";

const skipReason = skipReasonForTools(["smbd", "smbpasswd"]);

function optionsFor(peer: SambaPeer, extra: Partial<SmbRemoteOptions> = {}): SmbRemoteOptions {
  return { host: peer.host, port: peer.port, share: peer.share, username: peer.username, password: peer.password, ...extra };
}

describe.skipIf(skipReason !== undefined)("SMB remote against Samba", () => {
  describeRemoteConformance("SMB", async () => {
    const peer = await startSamba();
    return { remote: new SmbRemote(optionsFor(peer)), dispose: () => peer.stop() };
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
