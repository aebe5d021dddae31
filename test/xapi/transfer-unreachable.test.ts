/**
 * A host that drops every connection in the middle of an export: the VM's attempt fails with "pool <name> is unreachable
 * (<host>): ..." (typed, not undici's "other side closed"), and the job's `retries: 1` backs it up again once the host is back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BackupFixture, expectSuccess, startBackupFixture } from "../support/backup-fixture.js";

describe("a transfer whose host becomes unreachable", () => {
  let f: BackupFixture;
  beforeAll(async () => {
    f = await startBackupFixture();
  });
  afterAll(() => f?.stop());

  it("fails the attempt as 'pool unreachable' and retries the VM (retries 1)", async () => {
    const vm = f.vm("win-fat");
    const job = await f.createJob({
      name: "host drops during export",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      settings: { retries: 1 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    // Slow enough that the export is still under way when the host goes away.
    await f.setFault("export_bytes_per_second", { rate: 512 * 1024 });
    const runId = await f.startRun(job.id, job.schedules[0].id);
    await f.waitForRun(runId, (run) => Number(run.transferredBytes) > 0, 60_000);
    await f.setFault("host_unreachable", { seconds: 1 }).catch(() => undefined); // its own answer may be cut
    await f.clearFaults().catch(() => undefined);
    const run = await f.waitForEnd(runId, 180_000);
    const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
    expect(vmTask.warnings.join("\n")).toMatch(/attempt 1 failed \(.*pool lab is unreachable \(127\.0\.0\.1:\d+\): .*\); retrying/);
    expectSuccess(run);
    expect(await f.restorePoints(job.id)).toHaveLength(1);
  });
});
