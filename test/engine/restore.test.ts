import fs from "node:fs";
import { createClient, type Xapi } from "xen-api";
import { VhdFile } from "../../server/formats/vhd/index.js";
import { flipByte } from "../support/flip-byte.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql } from "../support/graphql.js";

interface PoolInfo {
  id: string;
  name: string;
  srs: { uuid: string; name: string }[];
}

describe("restoreVm against two lab pools", () => {
  let f: BackupFixture;
  let xapi2: Xapi;
  let pools: PoolInfo[];

  beforeAll(async () => {
    f = await startBackupFixture({ labPools: 2 });
    const lab2 = f.server.cairn.labs[1];
    xapi2 = createClient({
      url: lab2.url,
      auth: { user: lab2.user, password: lab2.password },
      allowUnauthorized: true,
      eventPollDelay: 1000,
    }) as Xapi;
    await xapi2.connect();
    await xapi2.objectsFetched;
    const data = await f.gql<{ pools: PoolInfo[] }>("{ pools { id name srs { uuid name } } }");
    const order = f.server.cairn.labs.map((lab) => lab.poolName);
    pools = [...data.pools].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  });
  afterAll(async () => {
    await xapi2?.disconnect();
    await f?.stop();
  });

  const srOf = (pool: number, name: string) => pools[pool].srs.find((sr) => sr.name === name)!.uuid;
  const clientOf = (pool: number) => (pool === 0 ? f.xapi : xapi2);

  async function restore(input: Record<string, unknown>) {
    const data = await f.gql<{ restoreVm: { id: string } }>("mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }", {
      input,
    });
    return f.waitForEnd(data.restoreVm.id);
  }

  /** The VM the restore created (from the restore task's result), with its disks' hashes. */
  async function restoredVm(run: { tasks: { kind: string; result: Record<string, unknown> | null }[] }, pool: number) {
    const xapi = clientOf(pool);
    const result = run.tasks.find((t) => t.kind === "restore")!.result!;
    await xapi.barrier();
    const vm = xapi.getObjectByUuid(String(result.vmUuid)) as unknown as {
      $ref: string;
      uuid: string;
      name_label: string;
      tags: string[];
      power_state: string;
      VBDs: string[];
      is_a_snapshot: boolean;
    };
    const hashes: string[] = [];
    const vdis: string[] = [];
    for (const vbdRef of vm.VBDs) {
      const vbd = xapi.getObjectByRef(vbdRef) as unknown as { type: string; VDI: string };
      if (vbd.type !== "Disk") continue;
      vdis.push(vbd.VDI);
      hashes.push(String(await xapi.call("lab.vdi_sha256", vbd.VDI)));
    }
    return { vm, hashes, vdis };
  }

  const vmCount = (pool: number) =>
    Object.values(clientOf(pool).objects.all).filter(
      (o) => o.$type === "VM" && !o.is_a_snapshot && !o.is_a_template && !o.is_control_domain,
    ).length;

  it("restores a delta restore point from the middle of a chain, exactly as its snapshot was, onto the second SR and onto a pool that never saw the VM", async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "delta for restore",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      settings: { fullInterval: 10 },
      schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
    });
    const hashByRun = new Map<string, string>();
    for (let i = 0; i < 3; i++) {
      if (i > 0) await f.xapi.call("lab.scribble", disk, 2, `restore-${i}`);
      const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      expectSuccess(run);
      hashByRun.set(run.id, expected);
    }
    const points = await f.gql(
      graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id kind chainLength timestamp run { id } } } }"),
      { j: job.id },
    );
    const middle = points.restorePoints.nodes.find((p) => p.chainLength === 2)!;
    expect(middle.kind).toBe("VHD_CHAIN");
    const expected = hashByRun.get(middle.run!.id)!;
    const sourceHashAfter = String(await f.xapi.call("lab.vdi_sha256", disk));
    expect(expected).not.toBe(sourceHashAfter);

    // Onto the second SR of the same pool, with a chosen name.
    const run1 = await restore({ restorePointId: middle.id, srUuid: srOf(0, "Second storage"), name: "db-data restored" });
    expectSuccess(run1);
    expect(run1.tasks.map((t: { kind: string }) => t.kind)).toEqual(expect.arrayContaining(["restore", "import", "configure"]));
    expect(run1.transferredBytes).toBeGreaterThan(0);
    const restored1 = await restoredVm(run1, 0);
    expect(restored1.vm.uuid).not.toBe(vm.uuid);
    expect(restored1.vm.name_label).toBe("db-data restored");
    expect(restored1.vm.tags).toContain("cairn:restored");
    expect(restored1.vm.power_state).toBe("Halted");
    expect(restored1.hashes).toEqual([expected]);
    const sr2 = f.xapi.getObjectByUuid(srOf(0, "Second storage")).$ref;
    expect((f.xapi.getObjectByRef(restored1.vdis[0]) as unknown as { SR: string }).SR).toBe(sr2);

    // Onto the second lab pool (a brand-new pool), default name, started.
    const before = vmCount(1);
    const run2 = await restore({ restorePointId: middle.id, srUuid: srOf(1, "Local storage"), poolId: pools[1].id, start: true });
    expectSuccess(run2);
    const restored2 = await restoredVm(run2, 1);
    expect(restored2.hashes).toEqual([expected]);
    expect(restored2.vm.name_label).toMatch(/^db-data \(restored \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\)$/);
    expect(restored2.vm.tags).toContain("cairn:restored");
    expect(restored2.vm.power_state).toBe("Running");
    expect(vmCount(1)).toBe(before + 1);

    // The source VM is untouched.
    expect(String(await f.xapi.call("lab.vdi_sha256", disk))).toBe(sourceHashAfter);
    expect(f.vm("db-data").uuid).toBe(vm.uuid);
  });

  it("restores a full XVA onto the second SR and onto the second pool, started when asked", async () => {
    const vm = f.vm("web-ext4");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "full for restore",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id kind } } }"), { j: job.id });
    const point = points.restorePoints.nodes[0];
    expect(point.kind).toBe("XVA");

    const run1 = await restore({ restorePointId: point.id, srUuid: srOf(0, "Second storage"), name: "web restored" });
    expectSuccess(run1);
    const restored1 = await restoredVm(run1, 0);
    expect(restored1.hashes).toEqual([expected]);
    expect(restored1.vm.uuid).not.toBe(vm.uuid);
    expect(restored1.vm.tags).toContain("cairn:restored");

    const run2 = await restore({ restorePointId: point.id, srUuid: srOf(1, "Second storage"), start: true });
    expectSuccess(run2);
    const restored2 = await restoredVm(run2, 1);
    expect(restored2.hashes).toEqual([expected]);
    expect(restored2.vm.power_state).toBe("Running");
    // Progress was reported against the XVA's size.
    const importTask = run2.tasks.find((t: { kind: string }) => t.kind === "import");
    expect(importTask.status).toBe("SUCCESS");
    expect(importTask.sizeBytes).toBeGreaterThan(0);
  });

  it("fails cleanly and leaves no VM when the backup is broken: files removed, or an XVA cut in the middle", async () => {
    const vm = f.vm("win-fat");
    const full = await f.createJob({
      name: "full to break",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(full.id, full.schedules[0].id));
    expectSuccess(await f.runToEnd(full.id, full.schedules[0].id));
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id path: id timestamp } } }"), {
      j: full.id,
    });
    const [newer, older] = points.restorePoints.nodes;
    const folder = `${f.remoteDir}/xo-vm-backups/${vm.uuid}`;
    const xvas = fs
      .readdirSync(folder)
      .filter((n) => n.endsWith(".xva"))
      .sort();
    const count0 = vmCount(0);
    const count1 = vmCount(1);
    const vdiCount = () => Object.values(xapi2.objects.all).filter((o) => o.$type === "VDI").length;
    const vdis1 = vdiCount();

    // The older XVA cut in half: the import starts, XAPI creates the VM, the upload ends early.
    const olderXva = `${folder}/${xvas[0]}`;
    fs.truncateSync(olderXva, Math.floor(fs.statSync(olderXva).size / 2 / 512) * 512);
    const cut = await restore({ restorePointId: older.id, srUuid: srOf(1, "Local storage") });
    expect(cut.status).toBe("FAILURE");
    expect(cut.error).toMatch(/restore of win-fat failed/);
    expect(cut.tasks.find((t: { kind: string }) => t.kind === "import").status).toBe("FAILURE");

    // The newer XVA removed: the restore says the backup is gone.
    fs.rmSync(`${folder}/${xvas[1]}`);
    const gone = await restore({ restorePointId: newer.id, srUuid: srOf(0, "Local storage") });
    expect(gone.status).toBe("FAILURE");
    expect(gone.error).toMatch(/no longer complete/);

    await f.xapi.barrier();
    await xapi2.barrier();
    expect(vmCount(0)).toBe(count0);
    expect(vmCount(1)).toBe(count1);
    expect(vdiCount()).toBe(vdis1);
  });

  it("refuses to restore wrong bytes: a flipped byte in a delta's VHD block or in an XVA fails the restore with an integrity error naming the file, and leaves no VM", async () => {
    const vm = f.vm("web-ext4");
    const delta = await f.createJob({
      name: "delta to rot",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(delta.id, delta.schedules[0].id));
    const full = await f.createJob({
      name: "full to rot",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(full.id, full.schedules[0].id));
    const points = await f.gql(graphql("query($v: String) { restorePoints(filter: { vmUuid: $v }) { nodes { id kind disks { id } } } }"), {
      v: vm.uuid,
    });
    const vhdPoint = points.restorePoints.nodes.find((p) => p.kind === "VHD_CHAIN")!;
    const xvaPoint = points.restorePoints.nodes.find((p) => p.kind === "XVA")!;
    const folder = `${f.remoteDir}/xo-vm-backups/${vm.uuid}`;
    // this job's files (earlier tests backed the same VM up): its disk folder, and the newest XVA (the point just made)
    const vhdFile = fs
      .readdirSync(`${folder}/vdis/${delta.id}`, { recursive: true })
      .map(String)
      .filter((n) => n.endsWith(".vhd"))
      .map((n) => `vdis/${delta.id}/${n}`)[0];
    const xvaFile = fs
      .readdirSync(folder)
      .filter((n) => n.endsWith(".xva"))
      .sort()
      .at(-1)!;
    const vhd = await VhdFile.open(`${folder}/${vhdFile}`);
    let at = -1;
    try {
      for (let i = 0; i < vhd.blockCount && at < 0; i++) if (vhd.hasBlock(i)) at = vhd.dataOffset(i)! + 1000;
    } finally {
      await vhd.close();
    }
    await flipByte(`${folder}/${vhdFile}`, at);
    // A byte XAPI itself does not check (the padding after the first .xxhash entry's 16 bytes): only Cairn's digest finds it.
    await flipByte(`${folder}/${xvaFile}`, xxhashPaddingOffset(fs.readFileSync(`${folder}/${xvaFile}`)));
    const count0 = vmCount(0);

    const fromVhd = await restore({ restorePointId: vhdPoint.id, srUuid: srOf(0, "Local storage") });
    expect(fromVhd.status).toBe("FAILURE");
    expect(JSON.stringify(fromVhd)).toMatch(/VHD_CHECKSUM_MISMATCH: .*block \d+.*the file is damaged/);
    const fromXva = await restore({ restorePointId: xvaPoint.id, srUuid: srOf(0, "Local storage") });
    expect(fromXva.status).toBe("FAILURE");
    expect(JSON.stringify(fromXva)).toMatch(
      new RegExp(`INTEGRITY_ERROR: xo-vm-backups/${vm.uuid}/${xvaFile.replace(".", "\\.")} is damaged`),
    );
    await f.xapi.barrier();
    expect(vmCount(0)).toBe(count0);
  });

  it("restores a rolling snapshot with VM.copy on its own pool, and refuses another pool with the reason", async () => {
    const vm = f.vm("win-fat");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "rolling for restore",
      mode: "ROLLING_SNAPSHOT",
      selection: { vmUuids: [vm.uuid] },
      schedules: [{ cron: "0 3 * * *", snapshotRetention: 2 }],
    });
    const expected = String(await f.xapi.call("lab.vdi_sha256", disk));
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const points = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id kind } } }"), { j: job.id });
    const point = points.restorePoints.nodes[0];
    expect(point.kind).toBe("SNAPSHOT");

    const refused = await f.server.graphql(
      "mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }",
      { input: { restorePointId: point.id, srUuid: srOf(1, "Local storage") } },
      f.token,
    );
    expect(refused.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.srUuid" });
    expect(refused.errors?.[0].message).toMatch(/VM\.copy inside that pool/);

    await f.xapi.call("lab.scribble", disk, 1, "after-snapshot");
    const run = await restore({ restorePointId: point.id, srUuid: srOf(0, "Second storage"), name: "from snapshot" });
    expectSuccess(run);
    expect(run.tasks.map((t: { kind: string }) => t.kind)).toContain("copy");
    const restored = await restoredVm(run, 0);
    expect(restored.hashes).toEqual([expected]);
    expect(restored.vm.tags).toContain("cairn:restored");
    expect(restored.vm.is_a_snapshot).toBe(false);
  });

  it("validates the request before launching: unknown point, unknown SR, ISO SR, SR not in the given pool", async () => {
    const points = await f.gql(graphql("{ restorePoints(filter: { kind: XVA }) { nodes { id } } }"));
    const pointId = points.restorePoints.nodes[0]?.id ?? "00000000-0000-4000-8000-000000000000";
    const ask = (input: Record<string, unknown>) =>
      f.server.graphql("mutation($input: RestoreInput!) { restoreVm(input: $input) { id } }", { input }, f.token);
    const runsBefore = (await f.gql(graphql(`{ runs { totalCount } }`))).runs.totalCount;

    expect(
      (await ask({ restorePointId: "00000000-0000-4000-8000-000000000000", srUuid: srOf(0, "Local storage") })).errors?.[0].extensions
        ?.code,
    ).toBe("NOT_FOUND");
    expect((await ask({ restorePointId: pointId, srUuid: "no-such-sr" })).errors?.[0].extensions).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "input.srUuid",
    });
    const iso = await ask({ restorePointId: pointId, srUuid: srOf(0, "ISO library") });
    expect(iso.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.srUuid" });
    expect(iso.errors?.[0].message).toMatch(/ISO library/);
    const wrongPool = await ask({ restorePointId: pointId, srUuid: srOf(0, "Local storage"), poolId: pools[1].id });
    expect(wrongPool.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.srUuid" });
    expect(
      (await ask({ restorePointId: pointId, srUuid: srOf(0, "Local storage"), poolId: "00000000-0000-4000-8000-000000000000" })).errors?.[0]
        .extensions?.code,
    ).toBe("NOT_FOUND");
    expect((await f.gql(graphql(`{ runs { totalCount } }`))).runs.totalCount).toBe(runsBefore);
  });
});

/** The offset of a padding byte after the data of the first `.xxhash` entry of an uncompressed XVA (tar). */
function xxhashPaddingOffset(xva: Buffer): number {
  for (let at = 0; at + 512 <= xva.length; ) {
    const name = xva
      .subarray(at, at + 100)
      .toString("latin1")
      .replace(/\0.*$/s, "");
    const size = parseInt(
      xva
        .subarray(at + 124, at + 136)
        .toString("latin1")
        .replace(/\0.*$/s, "")
        .trim() || "0",
      8,
    );
    if (name.endsWith(".xxhash")) return at + 512 + size + 100;
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error("no .xxhash entry: is the XVA compressed?");
}
