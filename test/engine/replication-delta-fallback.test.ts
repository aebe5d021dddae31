/**
 * CR of a disk XAPI cannot export as a delta: `export_raw_vdi?base=` of a disk that is not a VHD (a raw LV,
 * `sm_config:type=raw`) answers 200, an empty body, then fails its task "Cannot compute differences on non-VHD images"
 * (vhd_tool_wrapper.ml `send`). Cairn sees it and refreshes the replica with a full copy instead, with a warning naming
 * the disk; the replica equals the VM's disk.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";

type Rec = Record<string, any>;

describe("continuous replication of a disk that is not a VHD", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture();
  });
  afterAll(() => f?.stop());

  it("falls back to a full replica with a warning naming the disk, and the replica equals the VM", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    // The disk becomes a raw LV (what `VDI.create sm_config:type=raw` gives on an LVM SR); its snapshots inherit it.
    const lab = f.server.cairn.labs[0];
    lab.pool.store.update("VDI", disk, (record) => void (record.sm_config = { type: "raw" }));
    const pools = (await f.gql<{ pools: { srs: { uuid: string; name: string }[] }[] }>("{ pools { srs { uuid name } } }")).pools;
    const sr = pools[0].srs.find((s) => s.name === "Local storage")!.uuid;
    const job = await f.createJob({
      name: "cr raw",
      mode: "CONTINUOUS_REPLICATION",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [sr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 2 }],
    });
    const first = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(first);

    await f.xapi.call("lab.scribble", disk, 2, "raw-cr");
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    const warnings: string[] = run.tasks.flatMap((t: Rec) => t.warnings);
    expect(warnings).toEqual(
      expect.arrayContaining([expect.stringMatching(/full replica instead of a delta: disk .* is not stored as a VHD on its SR/)]),
    );
    await f.xapi.barrier();
    const replicas = (Object.values(f.xapi.objects.all) as Rec[]).filter(
      (o) => o.$type === "VM" && !o.is_a_snapshot && o.other_config["cairn:replica:job"] === job.id,
    );
    expect(replicas).toHaveLength(1);
    const vbd = (replicas[0].VBDs as string[]).map((ref) => f.xapi.getObjectByRef(ref) as unknown as Rec).find((v) => v.type === "Disk")!;
    expect(String(await f.xapi.call("lab.vdi_sha256", vbd.VDI))).toBe(expected);
  });

  it("also when only the source's disk refuses deltas (the replica's check passes): the delta export's verdict makes it a full", async () => {
    const vm = f.vm("win-fat");
    const [disk] = f.diskRefs(vm.ref);
    const pools = (await f.gql<{ pools: { srs: { uuid: string; name: string }[] }[] }>("{ pools { srs { uuid name } } }")).pools;
    const sr = pools[0].srs.find((s) => s.name === "Second storage")!.uuid;
    const job = await f.createJob({
      name: "cr source raw",
      mode: "CONTINUOUS_REPLICATION",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [sr],
      schedules: [{ cron: "0 3 * * *", copyRetention: 2 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    // From now on the VM's disk (and the snapshots taken of it) is a raw LV; the replica made before stays a VHD.
    f.server.cairn.labs[0].pool.store.update("VDI", disk, (record) => void (record.sm_config = { type: "raw" }));
    await f.xapi.call("lab.scribble", disk, 2, "raw-source");
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    const warnings: string[] = run.tasks.flatMap((t: Rec) => t.warnings);
    expect(warnings).toEqual(
      expect.arrayContaining([expect.stringMatching(/full replica instead of a delta: disk .* is not stored as a VHD on its SR/)]),
    );
    await f.xapi.barrier();
    const replicas = (Object.values(f.xapi.objects.all) as Rec[]).filter(
      (o) => o.$type === "VM" && !o.is_a_snapshot && o.other_config["cairn:replica:job"] === job.id,
    );
    expect(replicas).toHaveLength(1);
    const vbd = (replicas[0].VBDs as string[]).map((ref) => f.xapi.getObjectByRef(ref) as unknown as Rec).find((v) => v.type === "Disk")!;
    expect(String(await f.xapi.call("lab.vdi_sha256", vbd.VDI))).toBe(expected);
  });
});
