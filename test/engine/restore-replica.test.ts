import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

describe("restoring a replica", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture();
  });
  afterAll(() => f?.stop());

  it("copies a DR replica into an ordinary new VM: same disk bytes, startable, no replica marks", async () => {
    const vm = f.vm("win-fat");
    const [disk] = f.diskRefs(vm.ref);
    const srs = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    const second = srs.srs.find((sr) => sr.name === "Second storage")!;
    const local = srs.srs.find((sr) => sr.name === "Local storage")!;
    const job = await f.createJob({
      name: "dr",
      mode: "DISASTER_RECOVERY",
      selection: { vmUuids: [vm.uuid] },
      srUuids: [second.uuid],
      schedules: [{ cron: "0 4 * * *", copyRetention: 1 }],
    });
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j, kind: REPLICA }) { nodes { id } } }"), {
      j: job.id,
    });
    expect(points.restorePoints.nodes).toHaveLength(1);

    const restore = await f.gql<{ restoreVm: { id: string } }>("mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }", {
      input: { restorePointId: points.restorePoints.nodes[0].id, srUuid: local.uuid, name: "from replica", start: true },
    });
    const run = await f.waitForEnd(restore.restoreVm.id);
    expectSuccess(run);
    await f.xapi.barrier();
    const restored = Object.values(f.xapi.objects.all).find(
      (o) => o.$type === "VM" && o.name_label === "from replica" && !o.is_a_snapshot,
    ) as any;
    expect(restored).toBeDefined();
    expect(restored.power_state).toBe("Running");
    expect(restored.tags).toContain("cairn:restored");
    expect(restored.tags).not.toContain("cairn:replica");
    expect(restored.blocked_operations.start).toBeUndefined();
    expect(Object.keys(restored.other_config).filter((k: string) => k.startsWith("cairn:replica"))).toEqual([]);
    const vbd = (restored.VBDs as string[]).map((ref) => f.xapi.getObjectByRef(ref) as any).find((v) => v.type === "Disk");
    expect(String(await f.xapi.call("lab.vdi_sha256", vbd.VDI))).toBe(expected);
  });
});
