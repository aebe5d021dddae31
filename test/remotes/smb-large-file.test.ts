import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmbRemote } from "../../server/remotes/smb-remote.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { startSamba, type SambaPeer } from "./samba-process.js";
import { bytesAt, keystreamSource, sha256Of } from "./smb-keystream.js";

/**
 * A large file through a stock Samba (async I/O: interim answers all along), byte-exact as seen by three readers that
 * share no code with the writer's path: the share's folder on disk, Samba's own client (`smbclient get`), and our read
 * stream and random-access reads at odd offsets across request boundaries.
 */

const skipReason = skipReasonForTools(["smbd", "smbpasswd", "smbclient"]);
const MIB = 1024 * 1024;
const SIZE = 200 * MIB + 12_345;
const run = promisify(execFile);

describe.skipIf(skipReason !== undefined)("SMB remote: a 200 MiB file with an odd tail", () => {
  let peer: SambaPeer;
  let remote: SmbRemote;
  let scratch: string;
  let written: string;
  beforeAll(async () => {
    peer = await startSamba();
    scratch = await mkdtemp(join(tmpdir(), "cairn-smb-large-"));
    remote = new SmbRemote({ host: peer.host, port: peer.port, share: peer.share, username: peer.username, password: peer.password });
    const source = keystreamSource(SIZE);
    written = source.sha256;
    const { bytes } = await remote.writeStream("large/disk.vhd", source.stream, { sizeHint: SIZE });
    expect(bytes).toBe(SIZE);
  }, 300_000);
  afterAll(async () => {
    await remote?.close();
    await peer?.stop();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it("is on the share's disk byte for byte", async () => {
    expect(await sha256Of(createReadStream(join(peer.shareFolder, "large", "disk.vhd")))).toBe(written);
  }, 120_000);

  it("reads back the same through smbclient get", async () => {
    const copy = join(scratch, "copy.vhd");
    await run(
      "smbclient",
      [
        `//${peer.host}/${peer.share}`,
        "-p",
        String(peer.port),
        "-U",
        `${peer.username}%${peer.password}`,
        "-c",
        `get large/disk.vhd ${copy}`,
      ],
      {
        timeout: 240_000,
      },
    );
    expect(await sha256Of(createReadStream(copy))).toBe(written);
  }, 300_000);

  it("reads back the same through its own stream, ranges and random access", async () => {
    expect(await sha256Of(await remote.createReadStream("large/disk.vhd"))).toBe(written);
    const start = 37 * MIB - 3;
    const end = 45 * MIB + 17;
    expect(
      Buffer.concat(await (await remote.createReadStream("large/disk.vhd", { start, end })).toArray()).equals(
        bytesAt(start, end - start + 1),
      ),
    ).toBe(true);
    const tail = Buffer.concat(await (await remote.createReadStream("large/disk.vhd", { start: SIZE - 20_000 })).toArray());
    expect(tail.equals(bytesAt(SIZE - 20_000, 20_000))).toBe(true);
    const file = await remote.openRandomAccess("large/disk.vhd");
    try {
      expect(file.size).toBe(SIZE);
      for (const [offset, length] of [
        [0, 1],
        [MIB - 1, 2],
        [3 * MIB + 5, 9 * MIB + 3],
        [SIZE - 12_345, 12_345],
      ]) {
        expect((await file.read(offset, length)).equals(bytesAt(offset, length)), `${length} bytes at ${offset}`).toBe(true);
      }
    } finally {
      await file.close();
    }
  }, 300_000);
});
