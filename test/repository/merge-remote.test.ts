/**
 * Retention merges through the remote's own protocol (Remote.openForUpdate) on every kind that can change a file in place:
 * LOCAL (through the remote, not local paths), SMB against the test Samba, NFS against the test Ganesha. Each merge is
 * resumable after a crash at any step, reads and writes in proportion to the delta (counted on the remote's handles), and a
 * state file an older Cairn wrote (absolute local paths) is still resumed.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemote } from "../../server/remotes/create-remote.js";
import type { Remote, UpdatableFile } from "../../server/remotes/remote.js";
import { applyRetention } from "../../server/repository/retention.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { peerSkipReason, startRemotePeer, type RemotePeer } from "../support/remote-peers.js";
import { HOUR, MiB, SimulatedDisk, T0, filesUnder, readDisk, tempRemote, writeDeltaBackup } from "./support/fixtures.js";

class SimulatedCrash extends Error {}

interface History {
  vmUuid: string;
  jobId: string;
  scheduleId: string;
  contents: Map<number, Map<string, Buffer>>;
  disks: SimulatedDisk[];
}

function newHistory(seed: number, size = 8 * MiB): History {
  return {
    vmUuid: randomUUID(),
    jobId: randomUUID(),
    scheduleId: randomUUID(),
    contents: new Map(),
    disks: [new SimulatedDisk(randomUUID(), size, seed)],
  };
}

/** Backup n: 0 is a full, the others deltas of `writes` random writes each. */
async function backup(remote: Remote, history: History, n: number, writes = 6): Promise<number> {
  const timestamp = T0 + n * HOUR;
  if (n > 0) for (const disk of history.disks) disk.scribble(writes);
  history.contents.set(timestamp, await writeDeltaBackup(remote, { ...history, timestamp, kind: n === 0 ? "full" : "delta" }));
  return timestamp;
}

/** Every listed backup reads byte for byte what it held; returns their times. */
async function restorable(remote: Remote, history: History): Promise<number[]> {
  const { backups, problems } = await scanRepository(remote, { vmUuid: history.vmUuid });
  expect(problems.filter((p) => !p.includes("interrupted merge"))).toEqual([]);
  for (const found of backups) {
    for (const disk of found.disks) {
      const bytes = await readDisk(remote, disk.chain);
      expect(bytes.equals(history.contents.get(found.timestamp)?.get(disk.vdiUuid) as Buffer), found.metadataPath).toBe(true);
    }
  }
  return backups.map((b) => b.timestamp).sort((a, b) => a - b);
}

/** What went through a remote's file handles: in-place opens, and bytes read and written at offsets. */
interface Traffic {
  updates: number;
  read: number;
  written: number;
}

/** The remote, with the bytes its random-access and in-place handles move counted. */
function counted(inner: Remote): { remote: Remote; traffic: Traffic } {
  const traffic: Traffic = { updates: 0, read: 0, written: 0 };
  const remote = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target) as unknown;
      if (typeof value !== "function") return value;
      const method = (value as (...args: unknown[]) => Promise<unknown>).bind(target);
      if (key === "openForUpdate") {
        return async (path: string) => {
          traffic.updates++;
          const file = (await method(path)) as UpdatableFile;
          return {
            get size() {
              return file.size;
            },
            read: async (offset: number, length: number) => {
              traffic.read += length;
              return file.read(offset, length);
            },
            write: async (offset: number, data: Uint8Array) => {
              traffic.written += data.length;
              return file.write(offset, data);
            },
            truncate: (size: number) => file.truncate(size),
            sync: () => file.sync(),
            close: () => file.close(),
          } satisfies UpdatableFile;
        };
      }
      if (key === "openRandomAccess") {
        return async (path: string) => {
          const file = (await method(path)) as { size: number; read(o: number, l: number): Promise<Buffer>; close(): Promise<void> };
          return {
            size: file.size,
            read: async (offset: number, length: number) => {
              traffic.read += length;
              return file.read(offset, length);
            },
            close: () => file.close(),
          };
        };
      }
      return method;
    },
  });
  return { remote, traffic };
}

const KINDS = ["LOCAL", "SMB", "NFS"] as const;

for (const kind of KINDS) {
  const skip = kind === "LOCAL" ? undefined : peerSkipReason(kind);
  describe.skipIf(skip !== undefined)(`merges in place on ${kind}`, () => {
    let peer: RemotePeer | undefined;
    const remotes: Remote[] = [];
    /** A fresh remote on this kind's peer, in a folder of its own. */
    let freshRemote: () => Promise<Remote>;
    beforeAll(async () => {
      if (kind === "LOCAL") {
        freshRemote = tempRemote;
        return;
      }
      peer = await startRemotePeer(kind);
      const started = peer;
      freshRemote = async () => {
        const input = started.input(`merge-${kind}`, { direct: true });
        const remote = createRemote(input);
        remotes.push(remote);
        // Each test in its own sub-folder of the share or export.
        const folder = `merge-${randomUUID().slice(0, 8)}`;
        await remote.mkdir(folder);
        const scoped = createRemote({ ...input, location: `${input.location}/${folder}` });
        remotes.push(scoped);
        return scoped;
      };
    }, 120_000);
    afterAll(async () => {
      for (const remote of remotes) await remote.close();
      await peer?.stop();
    });

    it("retention merges removed deltas through the remote's openForUpdate, and every kept backup restores", async () => {
      const { remote, traffic } = counted(await freshRemote());
      expect(typeof remote.openForUpdate).toBe("function");
      const history = newHistory(61);
      const times: number[] = [];
      for (let n = 0; n < 5; n++) times.push(await backup(remote, history, n));
      const result = await applyRetention(remote, { ...history, keep: 2 });
      expect(result.problems).toEqual([]);
      expect(result.merged).toHaveLength(3);
      expect(traffic.updates).toBe(3);
      expect(await restorable(remote, history)).toEqual(times.slice(-2));
      const left = await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`);
      expect(left.filter((f) => f.endsWith(".vhd"))).toHaveLength(2);
      expect(left.filter((f) => /\.merg(e|ing)|\.tmp/.test(f))).toEqual([]);
    }, 300_000);

    for (const crashAt of ["planned", "block", "checksums-written", "identity", "renamed"] as const) {
      it(`resumes a merge that crashed after its "${crashAt}" step`, async () => {
        const remote = await freshRemote();
        const history = newHistory(71 + crashAt.length);
        const times: number[] = [];
        for (let n = 0; n < 3; n++) times.push(await backup(remote, history, n));
        let crashed = false;
        const first = await applyRetention(remote, {
          ...history,
          keep: 2,
          onMergeStep: ({ step }) => {
            if (step.kind === crashAt && !crashed) {
              crashed = true;
              throw new SimulatedCrash(`crash after ${crashAt}`);
            }
          },
        }).catch((error: unknown) => error);
        expect(crashed).toBe(true);
        expect(first).toBeDefined();
        expect(await restorable(remote, history)).toEqual(times.slice(-2));
        const next = await applyRetention(remote, { ...history, keep: 2 });
        expect(next.problems).toEqual([]);
        expect(next.merged).toEqual([expect.objectContaining({ resumed: true })]);
        expect(await restorable(remote, history)).toEqual(times.slice(-2));
        const left = await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`);
        expect(left.filter((f) => /\.merg(e|ing)|\.tmp/.test(f))).toEqual([]);
      }, 300_000);
    }

    it("reads and writes in proportion to the delta, not the disk: a 2-block delta merged into a 64 MiB full", async () => {
      const { remote, traffic } = counted(await freshRemote());
      const history = newHistory(81, 64 * MiB);
      history.disks[0].scribble(400); // the full holds (nearly) every block
      await backup(remote, history, 0);
      history.disks[0].scribble(0);
      const timestamp = T0 + HOUR;
      // One write of 8 sectors in each of two blocks.
      const disk = history.disks[0];
      disk.random.fill(disk.bytes.subarray(5 * 2 * MiB, 5 * 2 * MiB + 4096));
      disk.random.fill(disk.bytes.subarray(20 * 2 * MiB + 8192, 20 * 2 * MiB + 12_288));
      (disk as unknown as { touched: Set<number> }).touched = new Set([
        ...Array.from({ length: 8 }, (_, i) => (5 * 2 * MiB) / 512 + i),
        ...Array.from({ length: 8 }, (_, i) => (20 * 2 * MiB + 8192) / 512 + i),
      ]);
      history.contents.set(timestamp, await writeDeltaBackup(remote, { ...history, timestamp, kind: "delta" }));
      await backup(remote, history, 2, 1);
      const fullPath = (await filesUnder(remote, `xo-vm-backups/${history.vmUuid}`)).filter((f) => f.endsWith(".vhd")).sort()[0];
      const fullSize = (await remote.stat(`xo-vm-backups/${history.vmUuid}/${fullPath}`)).size;
      expect(fullSize).toBeGreaterThan(60 * MiB);
      const before = { ...traffic };
      const result = await applyRetention(remote, { ...history, keep: 2 });
      expect(result.merged).toHaveLength(1);
      const read = traffic.read - before.read;
      const written = traffic.written - before.written;
      const block = 2 * MiB + 512;
      console.log(
        `${kind}: merging a 2-block delta into a ${(fullSize / MiB).toFixed(1)} MiB full read ${read} bytes and wrote ${written} through the remote's handles`,
      );
      // The child's two blocks read (twice: checked, then merged), the parent's two blocks read and rewritten, footers,
      // headers and BATs: a few blocks, whatever the disk's size.
      expect(written).toBeLessThan(2 * block + 64 * 1024);
      expect(read).toBeLessThan(6 * block + 256 * 1024);
      // Eight blocks at most against the 32 of this disk: the bounds above do not grow with the disk.
      expect(read + written).toBeLessThan(fullSize / 3);
      expect(await restorable(remote, history)).toEqual([T0 + HOUR, T0 + 2 * HOUR]);
    }, 300_000);

    if (kind === "LOCAL") {
      it("resumes a merge from a state file an older Cairn wrote, with absolute local paths", async () => {
        const local = await tempRemote();
        const history = newHistory(91);
        const times: number[] = [];
        for (let n = 0; n < 3; n++) times.push(await backup(local, history, n));
        let crashed = false;
        await applyRetention(local, {
          ...history,
          keep: 2,
          onMergeStep: ({ step }) => {
            if (step.kind === "block" && !crashed) {
              crashed = true;
              throw new SimulatedCrash("crash mid-merge");
            }
          },
        }).catch(() => undefined);
        expect(crashed).toBe(true);
        const statePath = (await filesUnder(local)).find((f) => f.endsWith(".merge.json")) as string;
        const state = JSON.parse((await local.readFile(statePath)).toString()) as { parent: string; child: string };
        expect(state.child).toBe(statePath.slice(0, -".merge.json".length));
        // What Cairn wrote before merges ran through the remote: the same state, with this machine's absolute paths.
        await local.writeFile(
          statePath,
          JSON.stringify({ ...state, parent: join(local.root, state.parent), child: join(local.root, state.child) }),
        );
        const next = await applyRetention(local, { ...history, keep: 2 });
        expect(next.problems).toEqual([]);
        expect(next.merged).toEqual([expect.objectContaining({ resumed: true, child: state.child, parent: state.parent })]);
        expect(await restorable(local, history)).toEqual(times.slice(-2));
        expect((await filesUnder(local)).filter((f) => f.includes(".merge"))).toEqual([]);
      });

      it("refuses a state file whose paths lead outside the disk's folder, leaving the folder as it is", async () => {
        const local = await tempRemote();
        const history = newHistory(93);
        for (let n = 0; n < 3; n++) await backup(local, history, n);
        let crashed = false;
        await applyRetention(local, {
          ...history,
          keep: 2,
          onMergeStep: ({ step }) => {
            if (step.kind === "block" && !crashed) {
              crashed = true;
              throw new SimulatedCrash("crash mid-merge");
            }
          },
        }).catch(() => undefined);
        const statePath = (await filesUnder(local)).find((f) => f.endsWith(".merge.json")) as string;
        const state = JSON.parse((await local.readFile(statePath)).toString()) as { parent: string; child: string };
        await local.writeFile(statePath, JSON.stringify({ ...state, parent: "elsewhere/other.vhd" }));
        const next = await applyRetention(local, { ...history, keep: 2 });
        expect(next.merged).toEqual([]);
        expect(next.problems.join("\n")).toMatch(/could not be finished \(the state file names elsewhere\/other\.vhd as the parent/);
        expect((await filesUnder(local)).filter((f) => f.endsWith(".merge.json"))).toEqual([statePath]);
      });
    }
  });
}
