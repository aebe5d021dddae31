import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseVhdStream } from "../../server/formats/vhd/index.js";
import { createRemote } from "../../server/remotes/create-remote.js";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import type { Remote } from "../../server/remotes/remote.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";

const DISK_MB = 32;

async function hashChain(chain: Awaited<ReturnType<typeof openBackupDisk>>): Promise<string> {
  const hash = createHash("sha256");
  const step = 4 * 1024 * 1024;
  for (let offset = 0; offset < chain.virtualSize; offset += step)
    hash.update(await chain.read(offset, Math.min(step, chain.virtualSize - offset)));
  return hash.digest("hex");
}

/** The block indexes and disk type of a VHD file on the local remote. */
async function vhdBlocks(path: string): Promise<{ indexes: number[]; differencing: boolean }> {
  const indexes: number[] = [];
  let differencing = false;
  for await (const item of parseVhdStream(createReadStream(path))) {
    if (item.kind === "block") indexes.push(item.index);
    if (item.kind === "header") differencing = item.footer.diskType === 4;
  }
  return { indexes, differencing };
}

const warningsOf = (run: { tasks: Array<{ warnings: string[] }> }) => run.tasks.flatMap((task) => task.warnings);
const exportsOf = (run: { tasks: Array<{ kind: string; result: any }> }) => run.tasks.filter((task) => task.kind === "export");

describe("DELTA backups through CBT + NBD against the lab", () => {
  let f: BackupFixture;
  let remote: Remote;
  let network: string;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: DISK_MB });
    remote = createRemote({ kind: "LOCAL", location: f.remoteDir });
    await remote.open();
    network = (await f.xapi.call<string[]>("network.get_all"))[0];
    await f.xapi.call("network.add_purpose", network, "insecure_nbd");
  });
  afterAll(async () => {
    await remote?.close();
    await f?.stop();
  });

  /** Every restore point of the job restores the bytes the VM's disk had at its run. */
  async function expectRestoresMatch(jobId: string, vmUuid: string, hashAtRun: Map<string, string>): Promise<void> {
    const { scanRepository } = await import("../../server/repository/scanner.js");
    const scan = await scanRepository(remote, { vmUuid });
    expect(scan.problems).toEqual([]);
    const points = await f.restorePoints(jobId);
    expect(points.length).toBe(hashAtRun.size);
    for (const point of points) {
      const backup = scan.backups.find((b) => b.timestamp === Date.parse(point.timestamp))!;
      const chain = await openBackupDisk(remote, backup.disks[0]);
      try {
        expect(await hashChain(chain), `restore point of run ${point.run.id}`).toBe(hashAtRun.get(point.run.id));
      } finally {
        await chain.close();
      }
    }
  }

  /** Between runs: the job keeps one snapshot, whose disk holds CBT metadata and no data. */
  async function expectNoSnapshotData(jobId: string, vmUuid: string, sourceVdi: string): Promise<void> {
    const snapshots = await f.jobSnapshots(jobId, vmUuid);
    expect(snapshots).toHaveLength(1);
    const map = JSON.parse((snapshots[0].other_config as Record<string, string>)["cairn:cbt:vdis"]) as Record<string, string>;
    const sourceUuid = String(await f.xapi.call("VDI.get_uuid", sourceVdi));
    const snapshotVdi = await f.xapi.call<string>("VDI.get_by_uuid", map[sourceUuid]);
    expect(await f.xapi.call("VDI.get_type", snapshotVdi)).toBe("cbt_metadata");
    expect(await f.xapi.call("lab.vdi_blocks", snapshotVdi)).toEqual([]);
    // No snapshot of the disk anywhere on the SR keeps data.
    for (const snapshot of await f.xapi.call<string[]>("VDI.get_snapshots", sourceVdi)) {
      expect(await f.xapi.call("VDI.get_type", snapshot)).toBe("cbt_metadata");
    }
  }

  it("after the first full, reads only the changed blocks through NBD; chains restore byte-exact; no snapshot data stays", {
    timeout: 300_000,
  }, async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "cbt",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      settings: { cbtNbd: true, nbdConnections: 3 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 10 }],
    });
    const hashAtRun = new Map<string, string>();
    for (let i = 0; i < 4; i++) {
      const written = i > 0 ? await f.xapi.call<number[]>("lab.scribble", disk, i, `cbt-${i}`) : [];
      const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      expect(warningsOf(run)).toEqual([]);
      hashAtRun.set(run.id, expected);
      const [exported] = exportsOf(run);
      if (i === 0) {
        expect(exported.result.differencing).toBe(false);
        expect(await f.xapi.call("VDI.get_cbt_enabled", disk)).toBe(true);
      } else {
        expect(exported.result).toMatchObject({ differencing: true, nbd: true, changedBlocks: written.length });
        // Only the changed 2 MiB blocks left the pool, and the delta holds exactly them.
        expect(exported.result.readFromPool).toBe(written.length * 2 * 1024 * 1024);
        const { scanRepository } = await import("../../server/repository/scanner.js");
        const scan = await scanRepository(remote, { vmUuid: vm.uuid });
        const newest = scan.backups.sort((a, b) => a.timestamp - b.timestamp).at(-1)!;
        const file = await vhdBlocks(join(f.remoteDir, newest.disks[0].chain.at(-1)!));
        expect(file.indexes).toEqual([...written].sort((a, b) => a - b));
      }
      await expectNoSnapshotData(job.id, vm.uuid, disk);
    }
    await expectRestoresMatch(job.id, vm.uuid, hashAtRun);
  });

  it("falls back to the export path with a warning when CBT was reset, NBD is not offered or an NBD connection breaks", {
    timeout: 300_000,
  }, async () => {
    const vm = f.vm("win-fat");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "cbt-fallbacks",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      settings: { cbtNbd: true },
      schedules: [{ cron: "0 3 * * *", exportRetention: 10 }],
    });
    const hashAtRun = new Map<string, string>();
    const runOnce = async (i: number) => {
      await f.xapi.call("lab.scribble", disk, 2, `fallback-${i}`);
      const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      hashAtRun.set(run.id, expected);
      await expectNoSnapshotData(job.id, vm.uuid, disk);
      return run;
    };
    await runOnce(0); // the first full
    expect(exportsOf(await runOnce(1)).at(-1)!.result.nbd).toBe(true);

    const cases: Array<[string, () => Promise<void>, RegExp, () => Promise<void>]> = [
      ["CBT reset", () => f.setFault("cbt_reset", {}), /changed block tracking cannot tell what changed/, async () => {}],
      [
        "NBD not offered",
        () => f.xapi.call("network.remove_purpose", network, "insecure_nbd"),
        /offers no NBD/,
        () => f.xapi.call("network.add_purpose", network, "insecure_nbd"),
      ],
      ["an NBD cut", () => f.setFault("nbd_drop_after_bytes", { bytes: 1024 * 1024 }), /NBD connection broke/, () => f.clearFaults()],
    ];
    let i = 2;
    for (const [what, inject, warning, heal] of cases) {
      await inject();
      const fallback = await runOnce(i++);
      expect(warningsOf(fallback).join("\n"), what).toMatch(warning);
      expect(warningsOf(fallback).join("\n"), what).toMatch(/the export path makes a full instead/);
      expect(exportsOf(fallback).at(-1)!.result, what).toMatchObject({ differencing: false });
      await heal();
      // The next run is a CBT delta again, on top of the fallback's full.
      const again = await runOnce(i++);
      expect(warningsOf(again), what).toEqual([]);
      expect(exportsOf(again).at(-1)!.result, what).toMatchObject({ differencing: true, nbd: true, changedBlocks: 2 });
    }
    await expectRestoresMatch(job.id, vm.uuid, hashAtRun);
  });

  it("refuses cbtNbd on a job that is not DELTA, and more than 16 NBD connections", async () => {
    const vm = f.vm("db-data");
    const result = await f.server.graphql(
      "mutation($input: JobInput!) { createJob(input: $input) { id } }",
      { input: { name: "full-cbt", mode: "FULL", selection: { vmUuids: [vm.uuid] }, remoteIds: [f.remoteId], settings: { cbtNbd: true } } },
      f.token,
    );
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.settings.cbtNbd" });
    const connections = await f.server.graphql(
      "mutation($input: JobInput!) { createJob(input: $input) { id } }",
      {
        input: {
          name: "delta-cbt",
          mode: "DELTA",
          selection: { vmUuids: [vm.uuid] },
          remoteIds: [f.remoteId],
          settings: { cbtNbd: true, nbdConnections: 17 },
        },
      },
      f.token,
    );
    expect(connections.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.settings.nbdConnections" });
  });
});
