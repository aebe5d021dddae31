/**
 * A DELTA backup to a remote of a disk XAPI cannot export as a delta (a raw LV: `sm_config:type=raw`; its
 * `export_raw_vdi?base=` answers 200, an empty body, then fails "Cannot compute differences on non-VHD images"): Cairn
 * makes a full backup instead, with a warning naming the disk, and the restore point holds the disk as it is.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";

type Rec = Record<string, any>;

describe("a DELTA backup of a disk that is not a VHD", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture();
  });
  afterAll(() => f?.stop());

  it("backs the disk up in full with a warning naming it, and that full restores the disk as it is", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({ name: "delta raw", mode: "DELTA", selection: { vmUuids: [vm.uuid] }, remoteIds: [f.remoteId] });
    expectSuccess(await f.runToEnd(job.id));

    // From now on the disk (and the snapshots taken of it) is a raw LV; the first backup's base snapshot stays a VHD.
    f.server.cairn.labs[0].pool.store.update("VDI", disk, (record) => void (record.sm_config = { type: "raw" }));
    await f.xapi.call("lab.scribble", disk, 2, "raw-delta");
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    const run = await f.runToEnd(job.id);
    expectSuccess(run);
    const warnings: string[] = run.tasks.flatMap((t: Rec) => t.warnings);
    expect(warnings).toEqual(
      expect.arrayContaining([expect.stringMatching(/disk .* is not stored as a VHD on its SR.*: a full backup instead/)]),
    );

    const points = await f.restorePoints(job.id);
    const [newest, first] = points.sort((a: Rec, b: Rec) => Date.parse(b.timestamp) - Date.parse(a.timestamp));
    expect(newest.chainLength).toBe(first.chainLength); // a full, as the first backup: no parent on the remote
    const pools = (await f.gql<{ pools: { srs: { uuid: string; name: string }[] }[] }>("{ pools { srs { uuid name } } }")).pools;
    const sr = pools[0].srs.find((s) => s.name === "Local storage")!.uuid;
    const restore = await f.gql<{ restoreVm: { id: string } }>("mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }", {
      input: { restorePointId: newest.id, srUuid: sr, name: "raw disk restored" },
    });
    expectSuccess(await f.waitForEnd(restore.restoreVm.id));
    await f.xapi.barrier();
    const restored = (Object.values(f.xapi.objects.all) as Rec[]).find((o) => o.$type === "VM" && o.name_label === "raw disk restored")!;
    const vbd = (restored.VBDs as string[]).map((ref) => f.xapi.getObjectByRef(ref) as unknown as Rec).find((v) => v.type === "Disk")!;
    expect(String(await f.xapi.call("lab.vdi_sha256", vbd.VDI))).toBe(expected);
  }, 240_000);
});
