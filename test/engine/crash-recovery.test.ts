/**
 * kill -9 of the server during a transfer. The server runs as a child process (test/support/killable-server.ts) with
 * the lab in it, on a test database this file can read, and its own DATA_DIR. The lab dies with it and comes back from DATA_DIR/lab (its state file) on restart.
 *
 * After the restart: the run is INTERRUPTED with a message saying why, no restore point of it exists (not in the database,
 * no metadata file, no temporary file on the remote), the snapshot it made is gone, the VM folder's lock is released, and
 * the next run succeeds as a delta on the base that remains. A FULL run killed the same way leaves nothing either.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKillableCairn, type KillableCairn } from "../support/killable-server.js";

function filesUnder(folder: string): string[] {
  if (!fs.existsSync(folder)) return [];
  return (fs.readdirSync(folder, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(folder, path.join(entry.parentPath, entry.name)))
    .sort();
}

describe("kill -9 during a transfer", () => {
  let server: KillableCairn;
  let db: KillableCairn["db"];
  let dataDir: string;
  const gql: KillableCairn["gql"] = (query, variables) => server.gql(query, variables);
  const waitForRun: KillableCairn["waitForRun"] = (runId, predicate, timeoutMs) => server.waitForRun(runId, predicate, timeoutMs);
  const runToEnd: KillableCairn["runToEnd"] = (jobId, scheduleId) => server.runToEnd(jobId, scheduleId);

  async function jobSnapshots(jobId: string): Promise<any[]> {
    await server.xapi.barrier();
    return Object.values(server.xapi.objects.all).filter(
      (o) => o.$type === "VM" && o.is_a_snapshot && (o.other_config as Record<string, string>)["xo:backup:job"] === jobId,
    );
  }

  beforeAll(async () => {
    server = await startKillableCairn({ labDiskMb: 64 });
    db = server.db;
    dataDir = server.dataDir;
  });
  afterAll(() => server?.stop());

  it("leaves an INTERRUPTED run with no restore point, no temporary file, no snapshot and no lock; the next run is a delta", {
    timeout: 300_000,
  }, async () => {
    await server.start();
    let xapi = server.xapi;
    const { vms } = await gql<{ vms: { name: string; uuid: string }[] }>("{ vms { name uuid } }");
    const vmUuid = vms.find((vm) => vm.name === "db-data")!.uuid;
    const { remotes } = await gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }");
    const remoteId = remotes.find((r) => r.name === "local")!.id;
    const { createJob: job } = await gql<{ createJob: { id: string; schedules: { id: string }[] } }>(
      "mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }",
      {
        input: {
          name: "crash",
          mode: "DELTA",
          selection: { vmUuids: [vmUuid] },
          remoteIds: [remoteId],
          schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
        },
      },
    );
    const scheduleId = job.schedules[0].id;
    const vmRecord = Object.values(xapi.objects.all).find((o) => o.$type === "VM" && o.uuid === vmUuid)!;
    const disk = (vmRecord.VBDs as string[]).map((ref) => xapi.getObjectByRef(ref)).find((vbd) => vbd.type === "Disk")!.VDI as string;

    for (let i = 0; i < 2; i++) {
      if (i > 0) await xapi.call("lab.scribble", disk, 2, `before-crash-${i}`);
      const run = await runToEnd(job.id, scheduleId);
      expect(run.status, `${run.error}\n${JSON.stringify(run.tasks, null, 1)}`).toBe("SUCCESS");
    }
    const vmFolder = path.join(dataDir, "backups", "xo-vm-backups", vmUuid);
    const filesBefore = filesUnder(vmFolder);
    const pointsBefore = await db.restorePoint.count({ where: { jobId: job.id } });
    expect(pointsBefore).toBe(2);
    const snapshotsBefore = (await jobSnapshots(job.id)).map((s) => s.uuid);
    expect(snapshotsBefore).toHaveLength(1); // the base of the next delta

    // The third run: slowed down, and the server killed mid-transfer.
    await xapi.call("lab.scribble", disk, 2, "crash-run");
    await xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 256 * 1024 });
    const { runJob } = await gql<{ runJob: { id: string } }>("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", {
      id: job.id,
      s: scheduleId,
    });
    const crashRunId = runJob.id;
    await waitForRun(crashRunId, (run) =>
      run.tasks.some(
        (t: { kind: string; status: string; progress: number }) => t.kind === "transfer" && t.status === "RUNNING" && t.progress > 0,
      ),
    );
    const crashSnapshots = (await jobSnapshots(job.id)).filter(
      (s) => (s.other_config as Record<string, string>)["cairn:run"] === crashRunId,
    );
    expect(crashSnapshots).toHaveLength(1);
    const crashDiskUuids = (crashSnapshots[0].VBDs as string[])
      .map((ref) => xapi.getObjectByRef(ref))
      .filter((vbd) => vbd.type === "Disk")
      .map((vbd) => xapi.getObjectByRef(vbd.VDI as string).uuid as string);
    expect(crashDiskUuids.length).toBeGreaterThan(0);
    expect(filesUnder(vmFolder).filter((name) => !filesBefore.includes(name)).length).toBeGreaterThan(0); // a temporary file
    expect(lockClaims(vmFolder)).toHaveLength(1); // the dead run's claim, still on the remote
    // What a kill between XAPI's VM.snapshot and the tagging of the snapshot leaves: a snapshot only its name ties to the
    // run. Made here by hand (that moment cannot be hit from outside), beside a user's own snapshot that must stay.
    const snapshotName = crashSnapshots[0].name_label as string;
    const untaggedRef = (await xapi.call(
      "VM.snapshot",
      vmRecord.$ref,
      snapshotName.replace(/ \d{8}T\d{6}Z /, " 20990101T000000Z "),
    )) as string;
    // And what a kill in the middle of the tagging leaves: the run's tag goes first, so it carries that one alone.
    const halfTaggedRef = (await xapi.call(
      "VM.snapshot",
      vmRecord.$ref,
      snapshotName.replace(/ \d{8}T\d{6}Z /, " 20990101T000001Z "),
    )) as string;
    await xapi.call("VM.add_to_other_config", halfTaggedRef, "cairn:run", crashRunId);
    const userRef = (await xapi.call("VM.snapshot", vmRecord.$ref, "before the upgrade")) as string;
    await xapi.barrier();
    const untaggedUuid = xapi.getObjectByRef(untaggedRef).uuid as string;
    const halfTaggedUuid = xapi.getObjectByRef(halfTaggedRef).uuid as string;
    const userUuid = xapi.getObjectByRef(userRef).uuid as string;
    expect(snapshotName).toContain(`(run ${crashRunId.slice(0, 8)})`);
    expect(((await server.kill()) as { signal: string }).signal).toBe("SIGKILL");
    expect((await db.run.findUniqueOrThrow({ where: { id: crashRunId } })).status).toBe("RUNNING");

    // Restart on the same DATA_DIR and database: recovery runs before the server answers.
    await server.start();
    xapi = server.xapi;
    const interrupted = await waitForRun(crashRunId, (run) => run.status !== "RUNNING", 30_000);
    expect(interrupted.status).toBe("INTERRUPTED");
    expect(interrupted.error).toMatch(/stopped \(crash or kill\)/);
    expect(interrupted.tasks.filter((t: { status: string }) => t.status === "RUNNING")).toEqual([]);
    expect(await db.restorePoint.count({ where: { runId: crashRunId } })).toBe(0);
    expect(await db.restorePoint.count({ where: { jobId: job.id } })).toBe(pointsBefore);
    // Nothing of the run on the remote: no metadata, no data file, no temporary file, no lock.
    expect(filesUnder(vmFolder)).toEqual(filesBefore);
    expect(lockClaims(vmFolder)).toEqual([]);
    // The snapshot it made is gone (with its disks); the base is still there.
    const after = await jobSnapshots(job.id);
    expect(after.map((s) => s.uuid)).toEqual(snapshotsBefore);
    const vdiUuids = new Set(
      Object.values(xapi.objects.all)
        .filter((o) => o.$type === "VDI")
        .map((o) => o.uuid as string),
    );
    for (const uuid of crashDiskUuids) expect(vdiUuids.has(uuid), `disk ${uuid} of the interrupted run's snapshot`).toBe(false);
    const vmUuidsNow = new Set(
      Object.values(xapi.objects.all)
        .filter((o) => o.$type === "VM")
        .map((o) => o.uuid as string),
    );
    expect(vmUuidsNow.has(untaggedUuid), "the run's untagged snapshot").toBe(false);
    expect(vmUuidsNow.has(halfTaggedUuid), "the run's half-tagged snapshot").toBe(false);
    expect(vmUuidsNow.has(userUuid), "a user's snapshot").toBe(true);

    // The next run succeeds, as a delta on the base that remained.
    const next = await runToEnd(job.id, scheduleId);
    expect(next.status, `${next.error}\n${JSON.stringify(next.tasks, null, 1)}`).toBe("SUCCESS");
    const exports = next.tasks.filter((t: { kind: string }) => t.kind === "export");
    expect(exports.length).toBeGreaterThan(0);
    for (const task of exports)
      expect(task.result.differencing, JSON.stringify(next.tasks.flatMap((t: { warnings: string[] }) => t.warnings))).toBe(true);
    expect(await db.restorePoint.count({ where: { jobId: job.id } })).toBe(pointsBefore + 1);
  });

  it("cleans up a FULL run killed mid-transfer the same way, and the next FULL run succeeds", { timeout: 300_000 }, async () => {
    if (!server.running) await server.start();
    let xapi = server.xapi;
    const { vms } = await gql<{ vms: { name: string; uuid: string }[] }>("{ vms { name uuid } }");
    const vmUuid = vms.find((vm) => vm.name === "win-fat")!.uuid;
    const { remotes } = await gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }");
    const remoteId = remotes.find((r) => r.name === "local")!.id;
    const { createJob: job } = await gql<{ createJob: { id: string; schedules: { id: string }[] } }>(
      "mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }",
      {
        input: {
          name: "crash full",
          mode: "FULL",
          selection: { vmUuids: [vmUuid] },
          remoteIds: [remoteId],
          schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
        },
      },
    );
    const scheduleId = job.schedules[0].id;
    const vmFolder = path.join(dataDir, "backups", "xo-vm-backups", vmUuid);
    const filesBefore = filesUnder(vmFolder);

    await xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 256 * 1024 });
    const { runJob } = await gql<{ runJob: { id: string } }>("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", {
      id: job.id,
      s: scheduleId,
    });
    await waitForRun(runJob.id, (run) =>
      run.tasks.some(
        (t: { kind: string; status: string; progress: number }) => t.kind === "transfer" && t.status === "RUNNING" && t.progress > 0,
      ),
    );
    expect((await jobSnapshots(job.id)).length).toBe(1);
    expect(filesUnder(vmFolder).filter((name) => !filesBefore.includes(name)).length).toBeGreaterThan(0);
    await server.kill();

    await server.start();
    xapi = server.xapi;
    const interrupted = await waitForRun(runJob.id, (run) => run.status !== "RUNNING", 30_000);
    expect(interrupted.status).toBe("INTERRUPTED");
    expect(await db.restorePoint.count({ where: { jobId: job.id } })).toBe(0);
    expect(filesUnder(vmFolder)).toEqual(filesBefore);
    expect(lockClaims(vmFolder)).toEqual([]);
    expect(await jobSnapshots(job.id)).toEqual([]);

    const next = await runToEnd(job.id, scheduleId);
    expect(next.status, `${next.error}\n${JSON.stringify(next.tasks, null, 1)}`).toBe("SUCCESS");
    expect(await db.restorePoint.count({ where: { jobId: job.id } })).toBe(1);
    expect(await jobSnapshots(job.id)).toEqual([]);
  });
});

/** The lock claims of a VM folder (`xo-vm-backups/.cairn-locks/<vm>/`), given the VM folder's local path. */
function lockClaims(vmFolder: string): string[] {
  const dir = `${vmFolder.slice(0, vmFolder.lastIndexOf("/"))}/.cairn-locks/${vmFolder.slice(vmFolder.lastIndexOf("/") + 1)}`;
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => name.endsWith(".json")) : [];
}
