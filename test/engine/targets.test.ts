/**
 * A FULL job writing to two remotes at once, one fork each: a remote that fails during the write (a 1 MiB tmpfs: the XVA
 * write stops on ENOSPC) is dropped with a warning naming it, the other gets the whole backup, and the failing one keeps
 * no partial file. When every remote fails (FULL or DELTA), the VM fails and so does the run, promptly: the export is
 * abandoned, not left waiting for a reader. When XAPI cuts the export itself, the VM fails with XAPI's error (the export
 * is blamed, not the remotes) and neither remote keeps a file. Needs root (mount -t tmpfs).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

function filesUnder(folder: string): string[] {
  if (!fs.existsSync(folder)) return [];
  return (fs.readdirSync(folder, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(folder, path.join(entry.parentPath, entry.name)))
    .sort();
}

describe("a backup to two remotes", () => {
  let f: BackupFixture;
  let scratch: string;
  const mounts: string[] = [];

  /** A LOCAL remote on a fresh 1 MiB tmpfs: room for locks and metadata, not for an XVA. */
  async function smallRemote(name: string): Promise<{ id: string; dir: string }> {
    const dir = path.join(scratch, name);
    fs.mkdirSync(dir);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
    mounts.push(dir);
    const data = await f.gql(graphql("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }"), {
      i: { name, kind: "LOCAL", location: dir },
    });
    return { id: data.createRemote.id, dir };
  }

  async function folderRemote(name: string): Promise<{ id: string; dir: string }> {
    const dir = path.join(scratch, name);
    fs.mkdirSync(dir);
    const data = await f.gql(graphql("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }"), {
      i: { name, kind: "LOCAL", location: dir },
    });
    return { id: data.createRemote.id, dir };
  }

  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 32 });
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "cairn-targets-"));
  });
  afterAll(async () => {
    for (const name of ["gone-FULL", "gone-DELTA"])
      if (scratch && fs.existsSync(path.join(scratch, name))) execFileSync("chattr", ["-i", path.join(scratch, name)]);
    for (const dir of mounts) execFileSync("umount", [dir]);
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    await f?.stop();
  });

  it("drops the remote that fails mid-write with a warning naming it; the other remote gets the backup, the failed one no partial file", async () => {
    const vm = f.vm("db-data");
    const small = await smallRemote("small");
    const job = await f.createJob({
      name: "two remotes, one too small",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId, small.id],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(run);
    expect(run.vmsSucceeded).toBe(1);
    const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
    expect(vmTask.status).toBe("SUCCESS");
    expect(vmTask.warnings.join("\n")).toMatch(/small dropped: .*(ENOSPC|space|full)/i);
    const transfers = run.tasks.filter((t: { kind: string }) => t.kind === "transfer");
    expect(transfers.map((t: { name: string; status: string }) => [t.name.endsWith("small"), t.status]).sort()).toEqual([
      [false, "SUCCESS"],
      [true, "FAILURE"],
    ]);

    // The good remote holds a complete backup, indexed as the one restore point; the small one holds nothing of it.
    const points = await f.restorePoints(job.id);
    expect(points).toHaveLength(1);
    expect(points[0].remote.id).toBe(f.remoteId);
    const good = filesUnder(`${f.remoteDir}/xo-vm-backups/${vm.uuid}`);
    expect(good.filter((n) => n.endsWith(".xva"))).toHaveLength(1);
    expect(good.filter((n) => n.endsWith(".json"))).toHaveLength(1);
    expect(filesUnder(small.dir).filter((n) => !n.startsWith(".cairn-remote-test"))).toEqual([]);
  });

  it.each(["FULL", "DELTA"])(
    "fails the VM and the run when every remote fails, leaving no partial file on either (%s)",
    { timeout: 120_000 },
    async (mode) => {
      const vm = f.vm("db-data");
      const small = await smallRemote(`small-${mode}`);
      const gone = await folderRemote(`gone-${mode}`);
      const job = await f.createJob({
        name: `two failing remotes ${mode}`,
        mode,
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [small.id, gone.id],
        schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
      });
      // After the job was created, the second remote's folder becomes unwritable.
      execFileSync("chattr", ["+i", gone.dir]);
      try {
        const run = await f.waitForEnd(await f.startRun(job.id, job.schedules[0].id), 60_000);
        expect(run.status, JSON.stringify(run.tasks, null, 1)).toBe("FAILURE");
        expect(run.vmsFailed).toBe(1);
        expect(run.error).toMatch(/1 of 1 VMs failed/);
        const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
        expect(vmTask.status).toBe("FAILURE");
        expect(vmTask.message).toMatch(/every target failed/);
        expect(vmTask.message).toMatch(new RegExp(`small-${mode}`));
        // The unwritable remote is named too: dropped when opened (a run warning) or when its write began (the VM's message).
        const said = run.tasks.flatMap((t: { warnings: string[]; message: string | null }) => [...t.warnings, t.message ?? ""]).join("\n");
        expect(said).toMatch(/gone.*(EPERM|not permitted|could not be opened|dropped)/i);
        expect(await f.restorePoints(job.id)).toEqual([]);
        expect(filesUnder(small.dir).filter((n) => !n.startsWith(".cairn-remote-test"))).toEqual([]);
        expect(filesUnder(gone.dir)).toEqual([]);
        // The snapshot was removed all the same.
        expect(await f.jobSnapshots(job.id, vm.uuid)).toEqual([]);
      } finally {
        execFileSync("chattr", ["-i", gone.dir]);
      }
    },
  );

  it.each(["FULL", "DELTA"])(
    "fails the VM when XAPI cuts the export (%s): neither remote keeps a file of it, and the snapshot goes",
    async (mode) => {
      const vm = f.vm("db-data");
      const other = await folderRemote(`second-${mode}`);
      const job = await f.createJob({
        name: `export cut ${mode}`,
        mode,
        selection: { vmUuids: [vm.uuid] },
        remoteIds: [f.remoteId, other.id],
        schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
      });
      const vmFolder = `${f.remoteDir}/xo-vm-backups/${vm.uuid}`;
      const before = filesUnder(vmFolder);
      await f.setFault("export_drop_after_bytes", { bytes: 3 * 1024 * 1024 });
      let run;
      try {
        run = await f.waitForEnd(await f.startRun(job.id, job.schedules[0].id), 60_000);
      } finally {
        await f.clearFaults();
      }
      expect(run.status, JSON.stringify(run.tasks, null, 1)).toBe("FAILURE");
      const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
      // The export is blamed, with XAPI's error, not the remotes.
      expect(vmTask.message).toMatch(/VDI_IO_ERROR/);
      expect(vmTask.message).not.toMatch(/every target failed/);
      expect(await f.restorePoints(job.id)).toEqual([]);
      expect(filesUnder(vmFolder)).toEqual(before);
      expect(filesUnder(other.dir).filter((n) => !n.startsWith(".cairn-remote-test"))).toEqual([]);
      expect(await f.jobSnapshots(job.id, vm.uuid)).toEqual([]);
    },
  );
});
