import { createHash } from "node:crypto";
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

describe("FULL backups against the lab", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture();
  });
  afterAll(() => f?.stop());

  it.each(["NONE", "GZIP", "ZSTD"])(
    "writes a valid XVA (%s) that the lab imports back into a VM whose disks hash the same",
    async (compression) => {
      const vm = f.vm("web-ext4");
      const job = await f.createJob({
        name: `full ${compression}`,
        mode: "FULL",
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId],
        settings: { compression },
        schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
      });
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      expect(run.vmsSucceeded).toBe(1);
      expect(run.transferredBytes).toBeGreaterThan(0);
      const kinds = run.tasks.map((t: { kind: string }) => t.kind);
      expect(kinds).toEqual(expect.arrayContaining(["vm", "snapshot", "export", "transfer"]));

      const points = await f.gql(
        graphql(
          "query($j: ID) { restorePoints(filter: { jobId: $j }) { totalCount nodes { kind compression sizeBytes remote { id } disks { id virtualSize } } } }",
        ),
        { j: job.id },
      );
      expect(points.restorePoints.totalCount).toBe(1);
      expect(points.restorePoints.nodes[0]).toMatchObject({ kind: "XVA", compression });

      // The snapshot was removed (snapshotRetention 0).
      await f.xapi.barrier();
      const snapshots = Object.values(f.xapi.objects.all).filter(
        (o) => o.$type === "VM" && o.is_a_snapshot && (o.other_config as Record<string, string>)["xo:backup:job"] === job.id,
      );
      expect(snapshots).toEqual([]);

      // Import the file back and compare disk hashes with the source VM's.
      const folder = `${f.server.dataDir}/backups/xo-vm-backups/${vm.uuid}`;
      const xva = fs.readdirSync(folder).find((n) => n.endsWith(".xva"))!;
      const sr = Object.values(f.xapi.objects.all).find((o) => o.$type === "SR" && o.name_label === "Second storage")!;
      const stream = fs.createReadStream(`${folder}/${xva}`);
      const imported = (await f.xapi.putResource(stream, "/import/", { query: { sr_id: sr.$ref } })) as string;
      await f.xapi.barrier();
      const importedVm = f.xapi.getObjectByRef(Array.isArray(imported) ? imported[0] : imported);
      const sourceVm = f.xapi.getObjectByRef(vm.ref);
      const hashes = async (record: any) => {
        const result: string[] = [];
        for (const vbdRef of record.VBDs as string[]) {
          const vbd = f.xapi.getObjectByRef(vbdRef);
          if (vbd.type !== "Disk") continue;
          result.push(String(await f.xapi.call("lab.vdi_sha256", vbd.VDI)));
        }
        return result.sort();
      };
      expect(await hashes(importedVm)).toEqual(await hashes(sourceVm));
      fs.rmSync(folder, { recursive: true, force: true });
      await f.gql("mutation($id: ID!) { scanRemote(id: $id) }", { id: f.remoteId });
      void createHash;
    },
  );

  it("backs up a job without schedules when run by hand, keeping the backup (no retention counts it)", async () => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({ name: "by hand", mode: "DELTA", selection: { vmUuids: [vm.uuid] }, remoteIds: [f.remoteId] });
    for (let i = 0; i < 2; i++) expectSuccess(await f.runToEnd(job.id));
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { totalCount nodes { schedule { id } } } }"), {
      j: job.id,
    });
    expect(points.restorePoints.totalCount).toBe(2);
    expect(points.restorePoints.nodes.map((n: { schedule: unknown }) => n.schedule)).toEqual([null, null]);
  });
});
