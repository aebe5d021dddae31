import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmbRemote, type SmbRemoteOptions } from "../../server/remotes/smb-remote.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { expectRemoteError } from "./conformance.js";
import { startSamba, type SambaPeer } from "./samba-process.js";
import { bytesAt, keystreamSource, sha256Of } from "./smb-keystream.js";
import { FLAG_SIGNED, SMB2, STATUS_PENDING, startSmbRecordingProxy } from "./smb-recording-proxy.js";

/**
 * Signing, per dialect family: HMAC-SHA256 on 2.0.2 and 2.1, AES-CMAC with SP800-108 keys on 3.0, and on 3.1.1 with the
 * key derived from the preauth integrity hash. Samba with `server signing = mandatory` refuses any unsigned request and
 * signs every answer, which this client checks: a wrong key or a wrong hash fails the very first signed exchange.
 */

const skipReason = skipReasonForTools(["smbd", "smbpasswd"]);
const MIB = 1024 * 1024;

function optionsFor(peer: SambaPeer, extra: Partial<SmbRemoteOptions> = {}): SmbRemoteOptions {
  return { host: peer.host, port: peer.port, share: peer.share, username: peer.username, password: peer.password, ...extra };
}

/** Everything a remote does, once, checked byte-exact. */
async function exercise(remote: SmbRemote, size: number): Promise<void> {
  const source = keystreamSource(size);
  await remote.writeStream("signed/disk.bin", source.stream);
  expect(await sha256Of(await remote.createReadStream("signed/disk.bin"))).toBe(source.sha256);
  expect(await remote.list("signed")).toEqual(["disk.bin"]);
  const file = await remote.openForUpdate("signed/disk.bin");
  await file.write(size, bytesAt(0, 1000));
  await file.truncate(size + 10);
  await file.sync();
  await file.close();
  expect((await remote.stat("signed/disk.bin")).size).toBe(size + 10);
  await remote.rename("signed/disk.bin", "signed/renamed.bin");
  expect(await remote.writeFileExclusive("signed/lock", "me")).toBe(true);
  expect((await remote.spaceInfo()).totalBytes).toBeGreaterThan(0);
  await remote.deleteTree("signed");
  expect(await remote.list("")).not.toContain("signed");
}

describe.skipIf(skipReason !== undefined)("SMB signing against Samba", () => {
  const dialects = [
    { max: "SMB2_02", dialect: 0x202, size: MIB + 5 }, // 64 KiB requests, one credit each
    { max: "SMB2_10", dialect: 0x210, size: 5 * MIB + 5 },
    { max: "SMB3_00", dialect: 0x300, size: 5 * MIB + 5 },
    { max: "SMB3_11", dialect: 0x311, size: 5 * MIB + 5 },
  ];
  for (const { max, dialect, size } of dialects) {
    describe(`server signing = mandatory, server max protocol = ${max}`, () => {
      let peer: SambaPeer;
      beforeAll(async () => {
        peer = await startSamba({ global: ["server signing = mandatory", `server max protocol = ${max}`] });
      });
      afterAll(async () => {
        await peer?.stop();
      });

      it("signs every request after the session setup and checks every answer's signature", async () => {
        const proxy = await startSmbRecordingProxy(peer.host, peer.port);
        const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
        try {
          await remote.open();
          expect(remote.connectionInfo).toEqual({ dialect, signing: true });
          await exercise(remote, size);
          const afterSetup = proxy.messages.filter((entry) => entry.command !== SMB2.SESSION_SETUP && entry.command !== 0);
          const requests = afterSetup.filter((entry) => entry.direction === "request");
          expect(requests.length).toBeGreaterThan(20);
          expect(requests.filter((entry) => (entry.flags & FLAG_SIGNED) === 0)).toEqual([]);
          const finals = afterSetup.filter((entry) => entry.direction === "response" && entry.status !== STATUS_PENDING);
          expect(finals.filter((entry) => (entry.flags & FLAG_SIGNED) === 0)).toEqual([]);
          expect(remote.connectionStats?.verifiedResponses).toBeGreaterThanOrEqual(finals.length);
        } finally {
          await remote.close();
          await proxy.stop();
        }
      });
    });
  }

  describe("a stock Samba (signing offered, not required)", () => {
    let peer: SambaPeer;
    beforeAll(async () => {
      peer = await startSamba();
    });
    afterAll(async () => {
      await peer?.stop();
    });

    it("on 3.1.1 signs the tree connect only (as MS-SMB2 3.2.4.1.1 asks), the rest unsigned", async () => {
      const proxy = await startSmbRecordingProxy(peer.host, peer.port);
      const remote = new SmbRemote(optionsFor(peer, { port: proxy.port }));
      try {
        await remote.writeFile("plain/file.txt", "unsigned");
        expect(remote.connectionInfo).toEqual({ dialect: 0x311, signing: false });
        const signed = proxy.messages.filter((entry) => entry.direction === "request" && (entry.flags & FLAG_SIGNED) !== 0);
        expect(signed.map((entry) => entry.command)).toEqual([SMB2.TREE_CONNECT]);
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });

    it("signs everything when asked to (alwaysSign), and the server then signs its answers", async () => {
      const proxy = await startSmbRecordingProxy(peer.host, peer.port);
      const remote = new SmbRemote(optionsFor(peer, { port: proxy.port, alwaysSign: true }));
      try {
        await exercise(remote, 3 * MIB + 1);
        expect(remote.connectionInfo?.signing).toBe(true);
        const requests = proxy.messages.filter((entry) => entry.direction === "request" && entry.command > SMB2.SESSION_SETUP);
        expect(requests.filter((entry) => (entry.flags & FLAG_SIGNED) === 0)).toEqual([]);
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });

    it("refuses an answer whose bytes were changed on the way, rather than returning them", async () => {
      const proxy = await startSmbRecordingProxy(peer.host, peer.port);
      const remote = new SmbRemote(optionsFor(peer, { port: proxy.port, alwaysSign: true }));
      try {
        await remote.writeFile("tampered/file.bin", bytesAt(0, 2 * MIB));
        proxy.tamper = (message, decoded) => {
          if (decoded.command === SMB2.READ && decoded.status === 0 && message.length > 200) message[150] ^= 0x01;
        };
        const error = await expectRemoteError(remote.readFile("tampered/file.bin"), "IO");
        expect(error.message).toContain("signature");
        proxy.tamper = undefined;
        // The connection is given up; the next call connects afresh and reads the right bytes.
        expect((await remote.readFile("tampered/file.bin")).equals(bytesAt(0, 2 * MIB))).toBe(true);
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });

    it("says PERMISSION_DENIED for a wrong password, without repeating it", async () => {
      const error = await expectRemoteError(new SmbRemote(optionsFor(peer, { password: "not-the-password" })).open(), "PERMISSION_DENIED");
      expect(error.message).not.toContain("not-the-password");
    });
  });
});
