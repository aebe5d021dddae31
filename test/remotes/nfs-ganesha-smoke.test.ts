import { execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ganeshaSkipReason, startGanesha, type GaneshaPeer } from "./ganesha-process.js";

describe.skipIf(ganeshaSkipReason() !== undefined)("ganesha peer", () => {
  const peers: GaneshaPeer[] = [];
  afterAll(async () => {
    await Promise.all(peers.map((peer) => peer.stop()));
  });

  it("runs two instances at once, each serving its own folder to an independent client", async () => {
    peers.push(...(await Promise.all([startGanesha(), startGanesha()])));
    for (const [index, peer] of peers.entries()) {
      await writeFile(join(peer.folder, "hello.txt"), `peer ${index}`);
      const url = `nfs://127.0.0.1${peer.exportPath}/hello.txt?nfsport=${peer.nfsPort}&mountport=${peer.mountPort}`;
      const out = join(peer.folder, "..", "copy.txt");
      execFileSync("nfs-cp", [url, out]);
      expect(execFileSync("cat", [out]).toString()).toBe(`peer ${index}`);
    }
  }, 120_000);
});
