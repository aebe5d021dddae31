/**
 * Immutability in real runs: a DELTA job on a LOCAL remote with a window of 7 days (the immutable attribute, Cairn running as
 * root). Retention of 1 would remove the older backups: it keeps them while they are immutable and says so in the run, and
 * every point restores byte-exact (lab.vdi_sha256); removeRestorePoint refuses them. The end of the window is simulated by
 * rewriting the until-dates into the past (the attribute lifted, each metadata re-sealed), after which removal and
 * retention go on as usual, a merge into a backup still immutable waiting for its window, chains intact.
 * The folder is released (`chattr -R -i`) before it is removed.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemote } from "../../server/remotes/create-remote.js";
import type { Remote } from "../../server/remotes/remote.js";
import { openBackupDisk } from "../../server/repository/chain-source.js";
import { parseBackupMetadata, serializeBackupMetadata } from "../../server/repository/metadata.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { stopAll } from "../support/stop-all.js";

const DAY = 24 * 3_600_000;
const WINDOW_DAYS = 7;
const POINTS = `query($j: ID) { restorePoints(first: 50, filter: { jobId: $j }) { nodes { id timestamp immutableUntil } } }`;

async function diskSha256(remote: Remote, vmUuid: string, timestamp: number): Promise<string> {
  const scan = await scanRepository(remote, { vmUuid });
  const backup = scan.backups.find((candidate) => candidate.timestamp === timestamp);
  if (!backup) throw new Error(`no backup of ${new Date(timestamp).toISOString()} (${scan.problems.join("; ")})`);
  const chain = await openBackupDisk(remote, backup.disks[0]);
  const hash = createHash("sha256");
  try {
    for (let offset = 0; offset < chain.virtualSize; offset += 4 << 20)
      hash.update(await chain.read(offset, Math.min(4 << 20, chain.virtualSize - offset)));
  } finally {
    await chain.close();
  }
  return hash.digest("hex");
}

/** Moves every backup's window into the past, as the days going by would: attribute lifted, until-date rewritten, re-sealed. */
async function endWindows(folder: string): Promise<void> {
  execFileSync("chattr", ["-R", "-i", folder]);
  const vmsDir = path.join(folder, "xo-vm-backups");
  for (const vm of await fs.readdir(vmsDir)) {
    if (vm.startsWith(".") || vm.endsWith(".lock")) continue;
    for (const name of await fs.readdir(path.join(vmsDir, vm))) {
      if (!/^\d{8}T\d{6}Z\.json$/.test(name)) continue;
      const file = path.join(vmsDir, vm, name);
      const metadata = parseBackupMetadata(await fs.readFile(file, "utf8"), file);
      if (metadata.cairn) metadata.cairn.immutableUntil = new Date(Date.now() - DAY).toISOString();
      await fs.writeFile(file, serializeBackupMetadata(metadata));
    }
  }
}

describe("retention and removal on an immutable LOCAL remote", () => {
  let f: BackupFixture;
  let folder: string;
  let remoteId: string;
  let remote: Remote;

  beforeAll(async () => {
    folder = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-immutable-engine-"));
    f = await startBackupFixture({ labDiskMb: 16 });
    const created = await f.gql(`mutation($input: RemoteInput!) { createRemote(input: $input) { id immutabilityDays } }`, {
      input: { name: "vault", kind: "LOCAL", location: folder, immutabilityDays: WINDOW_DAYS },
    });
    expect(created.createRemote.immutabilityDays).toBe(WINDOW_DAYS);
    remoteId = created.createRemote.id;
    remote = createRemote({ kind: "LOCAL", location: await fs.realpath(folder) });
    await remote.open();
  }, 300_000);

  afterAll(() =>
    stopAll(
      () => remote?.close(),
      () => f?.stop(),
      async () => {
        if (!folder) return;
        execFileSync("chattr", ["-R", "-i", folder]);
        await fs.rm(folder, { recursive: true, force: true });
      },
    ),
  );

  it("keeps immutable backups past retention, refuses their removal, then removes and merges once their window has passed", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "immutable-delta",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [remoteId],
      schedules: [{ cron: "0 1 * * *", exportRetention: 1 }],
    });
    const scheduleId = job.schedules[0].id;
    const hashes: string[] = [];
    const warnings: string[][] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `immutable-${i}`);
      hashes.push(String(await f.xapi.call("lab.vdi_sha256", disk)));
      const run = await f.runToEnd(job.id, scheduleId);
      expectSuccess(run);
      warnings.push(run.tasks.flatMap((task: { warnings: string[] }) => task.warnings));
    }

    const listed = (await f.gql(POINTS, { j: job.id })).restorePoints.nodes as Array<{
      id: string;
      timestamp: string;
      immutableUntil: string;
    }>;
    const points = listed.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
    expect(points).toHaveLength(3);
    for (const point of points) expect(Date.parse(point.immutableUntil)).toBe(Date.parse(point.timestamp) + WINDOW_DAYS * DAY);
    const readable = (iso: string) => `${iso.slice(0, 19).replace("T", " ")} UTC`;
    // The third run's retention would have removed the two older ones: it kept them and said why, naming the VM.
    for (const point of points.slice(0, 2)) {
      expect(warnings[2]).toContain(
        `kept db-data's backup of ${readable(point.timestamp)}: immutable until ${readable(point.immutableUntil)}`,
      );
    }
    for (const [i, point] of points.entries()) {
      expect(await diskSha256(remote, vm.uuid, Date.parse(point.timestamp)), `point ${i}`).toBe(hashes[i]);
    }

    const refused = await f.server.graphql(`mutation($id: ID!) { removeRestorePoint(id: $id) }`, { id: points[0].id }, f.token);
    expect(refused.errors?.[0]?.message).toContain(
      `db-data's backup of ${readable(points[0].timestamp)} is immutable until ${readable(points[0].immutableUntil)}: nobody can remove it before then`,
    );
    const plan = await f.gql(`query($id: ID!) { restorePoint(id: $id) { removal { refusal } } }`, { id: points[0].id });
    expect(plan.restorePoint.removal.refusal).toMatch(/immutable until/);

    // The windows end: the oldest can be removed (merged into the next), and the next run's retention removes the other.
    await endWindows(folder);
    await f.gql(`mutation($id: ID!) { removeRestorePoint(id: $id) }`, { id: points[0].id });
    await f.xapi.call("lab.scribble", disk, 1, "immutable-3");
    hashes.push(String(await f.xapi.call("lab.vdi_sha256", disk)));
    const last = await f.runToEnd(job.id, scheduleId);
    expectSuccess(last);
    const after = ((await f.gql(POINTS, { j: job.id })).restorePoints.nodes as Array<{ timestamp: string; immutableUntil: string }>).map(
      (point) => point,
    );
    expect(after).toHaveLength(1);
    const newest = after[0];
    expect(Date.parse(newest.immutableUntil)).toBeGreaterThan(Date.now());
    expect(await diskSha256(remote, vm.uuid, Date.parse(newest.timestamp))).toBe(hashes[3]);
    // The removed backup it builds on is merged into it once its own window has passed: until then it stays, and the run says so.
    expect(last.tasks.flatMap((task: { warnings: string[] }) => task.warnings).join("\n")).toMatch(
      /kept db-data's backup of .*: immutable until .*; .*\.vhd, which it builds on and no backup keeps any more, is merged into it once that has passed/,
    );
    const scan = await scanRepository(remote, { vmUuid: vm.uuid });
    expect(scan.backups).toHaveLength(1);
    expect(scan.backups[0].disks[0].chain).toHaveLength(2);
  });
});
