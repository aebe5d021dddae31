/**
 * The remote is the source of truth: after FULL and DELTA backups, a second Cairn on an EMPTY database, given a LOCAL remote
 * on the same folder, rebuilds every restore point with `scanRemote` (same count, VMs, times, kinds, chain lengths, sizes),
 * and what a crash leaves half-written (data files without metadata, temporary files, a metadata naming a missing file)
 * is never listed, by either server.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatBackupTimestamp } from "../../server/repository/layout.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { graphql } from "../support/graphql.js";

const POINT_FIELDS = "kind vmUuid vmName timestamp chainLength compression sizeBytes disks { id virtualSize }";
const HOUR = 3600_000;

describe("scanRemote into an empty database", () => {
  let f: BackupFixture;
  let second: TestCairn | undefined;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 16 });
  });
  afterAll(() =>
    stopAll(
      () => second?.stop(),
      () => f?.stop(),
    ),
  );

  /** Every restore point of a remote as one server lists it, in a stable order and without ids. */
  async function pointsOf(gql: (q: string, v?: Record<string, unknown>) => Promise<any>, remoteId: string) {
    const data = await gql(
      `query($f: RestorePointFilter) { restorePoints(first: 50, filter: $f) { totalCount nodes { ${POINT_FIELDS} } } }`,
      { f: { remoteId } },
    );
    expect(data.restorePoints.totalCount).toBe(data.restorePoints.nodes.length);
    return [...data.restorePoints.nodes].sort(
      (a: any, b: any) => a.vmUuid.localeCompare(b.vmUuid) || a.timestamp.localeCompare(b.timestamp),
    );
  }

  it("finds every restore point the first server made, and none of the half-written backups", { timeout: 240_000 }, async () => {
    const web = f.vm("web-ext4");
    const db = f.vm("db-data");
    const [disk] = f.diskRefs(db.ref);
    const full = await f.createJob({
      name: "full",
      mode: "FULL",
      selection: { vmUuids: [web.uuid] },
      remoteIds: [f.remoteId],
      settings: { compression: "ZSTD" },
      schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
    });
    const delta = await f.createJob({
      name: "delta",
      mode: "DELTA",
      selection: { vmUuids: [db.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
    });
    for (let i = 0; i < 2; i++) expectSuccess(await f.runToEnd(full.id, full.schedules[0].id));
    for (let i = 0; i < 3; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 1, `scan-${i}`);
      expectSuccess(await f.runToEnd(delta.id, delta.schedules[0].id));
    }
    const made = await pointsOf(f.gql, f.remoteId);
    expect(made).toHaveLength(5);
    expect(made.filter((p: any) => p.kind === "XVA")).toHaveLength(2);
    expect(made.filter((p: any) => p.kind === "VHD_CHAIN").map((p: any) => p.chainLength)).toEqual([1, 2, 3]);

    // What crashes leave behind, planted beside the real backups.
    const webFolder = path.join(f.remoteDir, "xo-vm-backups", web.uuid);
    const dbFolder = path.join(f.remoteDir, "xo-vm-backups", db.uuid);
    const later = Date.parse(made.at(-1).timestamp) + HOUR;
    const laterName = formatBackupTimestamp(later);
    const xva = fs.readdirSync(webFolder).find((n) => n.endsWith(".xva"))!;
    // An XVA whose metadata was never written, and an XVA still under its temporary name.
    fs.copyFileSync(path.join(webFolder, xva), path.join(webFolder, `${laterName}.xva`));
    fs.writeFileSync(path.join(webFolder, `.${formatBackupTimestamp(later + 1000)}.xva.tmp-0123456789abcdef`), Buffer.alloc(4096, 7));
    // A metadata being written (temporary name), and a metadata whose XVA is missing.
    const metadataName = fs.readdirSync(webFolder).find((n) => n.endsWith(".json"))!;
    const metadata = JSON.parse(fs.readFileSync(path.join(webFolder, metadataName), "utf8"));
    fs.writeFileSync(
      path.join(webFolder, `.${formatBackupTimestamp(later + 2000)}.json.tmp-fedcba9876543210`),
      JSON.stringify(metadata).slice(0, 100),
    );
    const orphan = { ...metadata, timestamp: later + 3000, xva: `./${formatBackupTimestamp(later + 3000)}.xva` };
    fs.writeFileSync(path.join(webFolder, `${formatBackupTimestamp(later + 3000)}.json`), JSON.stringify(orphan, null, 2));
    // A delta disk whose metadata was never written, and one still under its temporary name.
    const vhdFolder = path.join(dbFolder, "vdis", delta.id);
    const [vdiFolder] = fs.readdirSync(vhdFolder).map((n) => path.join(vhdFolder, n));
    const newestVhd = fs
      .readdirSync(vdiFolder)
      .filter((n) => n.endsWith(".vhd"))
      .sort()
      .at(-1)!;
    fs.copyFileSync(path.join(vdiFolder, newestVhd), path.join(vdiFolder, `${laterName}.vhd`));
    fs.writeFileSync(path.join(vdiFolder, `.${formatBackupTimestamp(later + 1000)}.vhd.tmp-00112233445566aa`), Buffer.alloc(4096, 9));

    // The first server, scanning again, lists the same points.
    expect((await f.gql(graphql("mutation($id: ID!) { scanRemote(id: $id) }"), { id: f.remoteId })).scanRemote).toBe(5);
    expect(await pointsOf(f.gql, f.remoteId)).toEqual(made);

    // A second server with an empty database.
    second = await startTestCairn();
    const token = await second.login();
    const gql = async (query: string, variables?: Record<string, unknown>) => {
      const result = await second!.graphql(query, variables, token);
      if (result.errors) throw new Error(`GraphQL error: ${JSON.stringify(result.errors)}`);
      return result.data;
    };
    expect((await gql("{ restorePoints { totalCount } }")).restorePoints.totalCount).toBe(0);
    const { createRemote } = await gql("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
      i: { name: "same folder", kind: "LOCAL", location: f.remoteDir },
    });
    expect((await gql("mutation($id: ID!) { scanRemote(id: $id) }", { id: createRemote.id })).scanRemote).toBe(5);
    const found = await pointsOf(gql, createRemote.id);
    expect(found).toEqual(made);
    // Nothing planted shows up under its time.
    for (const point of found) expect(Date.parse(point.timestamp)).toBeLessThan(later);
  });
});
