/**
 * One engine-level scenario, the same for every kind of remote (LOCAL, NFS, SMB, S3), each against its real peer
 * (test/support/remote-peers.ts), restic-style: a table of kinds, the same tests for each.
 *
 * - a FULL job and a DELTA job (fullInterval 4), 7 runs each with retention 3; every kept restore point restores byte-exact
 *   (compared with the lab disk's content at its run), merged chains included;
 * - the space is freed by merges: bytes stored on the peer (read on its own folder or bucket) stay bounded instead of
 *   growing by a delta at every run;
 * - a file-level restore of each kept delta point gives the file as it was at that run;
 * - `scanRemote` into an empty database lists exactly the kept points;
 * - the remote cut mid-run (connections reset, new ones refused) fails that target with a message naming the kind, host and
 *   path, while the LOCAL target of the same job succeeds;
 * - kill -9 of Cairn mid-merge and mid-transfer leaves nothing half-listed, and the next run cleans up.
 *
 * Two Cairn servers serve every kind (one in this process with the lab, one child process for the kills): each kind has
 * its own remote, jobs and peer, and the kinds run one after the other.
 */
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import tarStream from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { knownFiles } from "../../server/lab/known-files.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { startKillableCairn, type KillableCairn } from "../support/killable-server.js";
import {
  isTemporaryPath,
  peerSkipReason,
  startRemotePeer,
  type RemoteInput,
  type RemoteKindName,
  type RemotePeer,
} from "../support/remote-peers.js";
import { stopAll } from "../support/stop-all.js";

const ALL_KINDS: RemoteKindName[] = ["LOCAL", "NFS", "SMB", "S3"];
/** `REMOTE_KINDS=SMB,S3` runs only those kinds (a quick check by hand); every kind otherwise. */
const KINDS = process.env.REMOTE_KINDS ? ALL_KINDS.filter((kind) => process.env.REMOTE_KINDS!.split(",").includes(kind)) : ALL_KINDS;
const RUNS = 7;
const RETENTION = 3;
const FULL_INTERVAL = 4;
const NOTES = "/home/alice/notes.txt";
/** How each kind names itself in a remote's messages. */
const KIND_WORDS: Record<RemoteKindName, RegExp> = { LOCAL: /local remote/i, NFS: /\bNFS\b/, SMB: /\bSMB\b/, S3: /\bS3\b/ };

const POINT_FIELDS = "id kind vmUuid vmName timestamp chainLength sizeBytes disks { id virtualSize } run { id }";
/**
 * A schedule these tests run themselves (runJob with its id): disabled, so that it never fires on its own while a test
 * lists what a remote holds (a suite crossing 03:00 UTC once counted such a backup as a killed run's leftover).
 */
const runByHand = (exportRetention: number) => [{ cron: "0 3 * * *", enabled: false, exportRetention }];
const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

type Gql = <T = any>(query: string, variables?: Record<string, unknown>) => Promise<T>;

/** Files of a tar.gz: path -> bytes. */
async function untarGz(body: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: unknown) => void chunks.push(chunk as Buffer));
      stream.on("end", () => {
        if (header.type === "file") files.set(`/${header.name}`, Buffer.concat(chunks));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([gunzipSync(body)]).pipe(extract);
  await done;
  return files;
}

/** The restore points of a remote, as one server lists them (every page), oldest first. */
async function pointsOn(gql: Gql, remoteId: string, jobId?: string): Promise<any[]> {
  const data = await gql<{ restorePoints: { totalCount: number; nodes: any[] } }>(
    `query($f: RestorePointFilter) { restorePoints(first: 50, filter: $f) { totalCount nodes { ${POINT_FIELDS} } } }`,
    { f: { remoteId, ...(jobId ? { jobId } : {}) } },
  );
  expect(data.restorePoints.totalCount).toBe(data.restorePoints.nodes.length);
  return [...data.restorePoints.nodes].sort((a, b) => a.vmUuid.localeCompare(b.vmUuid) || a.timestamp.localeCompare(b.timestamp));
}

const createRemoteOn = async (gql: Gql, input: RemoteInput) =>
  (await gql<{ createRemote: { id: string } }>("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", { i: input })).createRemote
    .id;

/** Sum of the sizes of the stored files whose path matches. */
function bytesWhere(files: Map<string, number>, match: (file: string) => boolean): number {
  let total = 0;
  for (const [file, size] of files) if (match(file)) total += size;
  return total;
}

/** Warnings and messages of a run's tasks, as one text. */
const saidIn = (run: { tasks: { warnings: string[]; message: string | null }[] }) =>
  run.tasks.flatMap((t) => [...t.warnings, t.message ?? ""]).join("\n");

describe("one scenario on every kind of remote", () => {
  let f: BackupFixture;
  let killable: KillableCairn | undefined;
  /** The SR restores go to, on the in-process server's lab. */
  let labSrUuid: string;
  /** The notes file of web-ext4 as it is now on the lab disk, and where it lies (found once; rewritten in place). */
  let notesNow: Buffer;
  let notesOffset = -1;

  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 8 });
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    labSrUuid = srs.find((sr) => sr.name === "Local storage")!.uuid;
    notesNow = knownFiles("cairn").ext4.get(NOTES)!;
  }, 180_000);
  afterAll(() =>
    stopAll(
      () => killable?.stop(),
      () => f?.stop(),
    ),
  );

  /** Rewrites the notes file in place with a text of the same length naming `label`; returns the new content. */
  async function rewriteNotes(label: string): Promise<Buffer> {
    const [disk] = f.diskRefs(f.vm("web-ext4").ref);
    if (notesOffset < 0) {
      const size = Number((f.xapi.getObjectByRef(disk) as unknown as { virtual_size: number }).virtual_size);
      const image = Buffer.from(String(await f.xapi.call("lab.read_vdi", disk, 0, size)), "base64");
      notesOffset = image.indexOf(notesNow);
      expect(notesOffset).toBeGreaterThan(0);
    }
    const head = Buffer.from(`${label} `.padEnd(Math.min(32, notesNow.length), "."));
    const next = Buffer.concat([head, notesNow.subarray(head.length)]);
    await f.xapi.call("lab.write_vdi", disk, notesOffset, next.toString("base64"));
    notesNow = next;
    return next;
  }

  /** Restores a restore point onto the lab and returns the sha256 of the restored VM's disks. */
  async function restoredHashes(
    gql: Gql,
    xapi: BackupFixture["xapi"],
    pointId: string,
    waitForEnd: (id: string) => Promise<any>,
    srUuid = labSrUuid,
  ) {
    const { restoreVm } = await gql<{ restoreVm: { id: string } }>("mutation($i: RestoreInput!) { restoreVm(input: $i) { id } }", {
      i: { restorePointId: pointId, srUuid },
    });
    const run = await waitForEnd(restoreVm.id);
    expectSuccess(run);
    const vmUuid = String(run.tasks.find((t: { kind: string }) => t.kind === "restore").result.vmUuid);
    await xapi.barrier();
    const vm = xapi.getObjectByUuid(vmUuid) as unknown as { VBDs: string[] };
    const hashes: string[] = [];
    for (const ref of vm.VBDs) {
      const vbd = xapi.getObjectByRef(ref) as unknown as { type: string; VDI: string };
      if (vbd.type === "Disk") hashes.push(String(await xapi.call("lab.vdi_sha256", vbd.VDI)));
    }
    return hashes;
  }

  async function fileAt(pointId: string, file: string): Promise<Buffer | undefined> {
    const prepared = await f.gql<{ restoreFiles: { url: string } }>("mutation($i: FileRestoreInput!) { restoreFiles(input: $i) { url } }", {
      i: { restorePointId: pointId, disk: 0, paths: [file], format: "TAR_GZ" },
    });
    const response = await fetch(`${f.server.url}${prepared.restoreFiles.url}`);
    expect(response.status).toBe(200);
    return (await untarGz(Buffer.from(await response.arrayBuffer()))).get(file);
  }

  describe.each(KINDS)("%s", (kind) => {
    const skip = peerSkipReason(kind);
    describe.skipIf(skip !== undefined)(`on ${kind}`, () => {
      let peer: RemotePeer;
      let remoteId: string;
      const remoteName = `${kind.toLowerCase()} peer`;
      /** What the 7 runs recorded, for the tests after the first. */
      const record = {
        done: false,
        deltaJobId: "",
        fullJobId: "",
        /** Bytes of the DELTA job's VHDs and of the FULL job's XVAs on the peer after each run. */
        vhdBytes: [] as number[],
        xvaBytes: [] as number[],
        /** VHDs merged by the DELTA job's retention at each run. */
        merged: [] as number[],
        /** File-level restores: at runs 3, 5 and 6, each kept web-ext4 point's notes, with what they held at its run. */
        files: [] as { afterRun: number; point: string; expected: string; got: string | undefined }[],
      };

      /** The job of the cut test and what the peer held before its run. */
      const cut = { jobId: "", filesBefore: new Map<string, number>() };

      beforeAll(async () => {
        peer = await startRemotePeer(kind);
        remoteId = await createRemoteOn(f.gql, peer.input(remoteName));
      }, 180_000);
      afterAll(() => peer?.stop());

      it(`${RUNS} runs of a FULL and a DELTA job (retention ${RETENTION}, fullInterval ${FULL_INTERVAL}): each kept point restores byte-exact`, {
        timeout: 900_000,
      }, async () => {
        const db = f.vm("db-data");
        const web = f.vm("web-ext4");
        const [dbDisk] = f.diskRefs(db.ref);
        const full = await f.createJob({
          name: `${kind} full`,
          mode: "FULL",
          selection: { vmUuids: [db.uuid] },
          remoteIds: [remoteId],
          schedules: runByHand(RETENTION),
        });
        const delta = await f.createJob({
          name: `${kind} delta`,
          mode: "DELTA",
          selection: { vmUuids: [db.uuid, web.uuid] },
          remoteIds: [remoteId],
          settings: { fullInterval: FULL_INTERVAL },
          schedules: runByHand(RETENTION),
        });
        record.deltaJobId = delta.id;
        record.fullJobId = full.id;
        /** Per run id: the db-data disk's hash, the notes file's content. */
        const dbHashAt = new Map<string, string>();
        const notesAt = new Map<string, string>();

        const restoreEveryKept = async (jobId: string) => {
          for (const point of (await pointsOn(f.gql, remoteId, jobId)).filter((p) => p.vmUuid === db.uuid)) {
            const hashes = await restoredHashes(f.gql, f.xapi, point.id, (id) => f.waitForEnd(id, 300_000));
            expect(hashes, `${point.kind} point of run ${point.run?.id} (chain ${point.chainLength})`).toEqual([
              dbHashAt.get(point.run.id),
            ]);
          }
        };
        const fileRestores = async (afterRun: number) => {
          for (const point of (await pointsOn(f.gql, remoteId, delta.id)).filter((p) => p.vmUuid === web.uuid)) {
            let got: string | undefined;
            try {
              got = (await fileAt(point.id, NOTES))?.toString();
            } catch (error) {
              got = `failed: ${(error as Error).message}`;
            }
            record.files.push({ afterRun, point: point.id, expected: notesAt.get(point.run.id)!, got });
          }
        };

        for (let i = 0; i < RUNS; i++) {
          if (i > 0) await f.xapi.call("lab.scribble", dbDisk, 1, `${kind}-run-${i}`);
          const notes = (await rewriteNotes(`${kind} run ${i}`)).toString();
          const hash = String(await f.xapi.call("lab.vdi_sha256", dbDisk));

          const fullRun = await f.runToEnd(full.id, full.schedules[0].id);
          expectSuccess(fullRun);
          dbHashAt.set(fullRun.id, hash);
          const deltaRun = await f.runToEnd(delta.id, delta.schedules[0].id);
          expectSuccess(deltaRun);
          dbHashAt.set(deltaRun.id, hash);
          notesAt.set(deltaRun.id, notes);
          // Runs 0 and 4 are fulls (the first backup, then fullInterval 4); the others deltas.
          const exports = deltaRun.tasks.filter((t: { kind: string }) => t.kind === "export");
          expect(exports).toHaveLength(2);
          for (const task of exports)
            expect(task.result.differencing, `run ${i}: ${saidIn(deltaRun)}`).toBe(!(i === 0 || i % FULL_INTERVAL === 0));
          record.merged.push(
            deltaRun.tasks
              .filter((t: { kind: string }) => t.kind === "retention")
              .reduce((sum: number, t: { result: { merged?: number } | null }) => sum + (t.result?.merged ?? 0), 0),
          );

          const stored = await peer.files();
          expect([...stored.keys()].filter(isTemporaryPath), "temporary files after a run").toEqual([]);
          record.vhdBytes.push(bytesWhere(stored, (file) => file.includes(`/vdis/${delta.id}/`)));
          record.xvaBytes.push(bytesWhere(stored, (file) => file.endsWith(".xva")));

          const kept = await pointsOn(f.gql, remoteId);
          expect(kept.filter((p) => p.kind === "XVA")).toHaveLength(Math.min(i + 1, RETENTION));
          expect(kept.filter((p) => p.kind === "VHD_CHAIN")).toHaveLength(2 * Math.min(i + 1, RETENTION));

          // Runs 3 and 5 keep a chain whose oldest VHDs were merged (on a kind that merges); run 6 a chain from a new full.
          if (i === 3 || i === 5 || i === 6) {
            await restoreEveryKept(delta.id);
            await fileRestores(i);
          }
        }
        await restoreEveryKept(full.id);
        record.done = true;
      });

      it("frees the space of merged deltas: bytes stored stay bounded instead of growing by a delta at every run", () => {
        expect(record.done, "the runs did not all end").toBe(true);
        const { vhdBytes: v, xvaBytes: x, merged } = record;
        const delta = v[1] - v[0];
        expect(delta).toBeGreaterThan(0);
        const said = `VHD bytes after each run: ${v.join(", ")}; merged: ${merged.join(", ")}`;
        // Kept: runs 1-3 (run 0 merged into 1), 2-4 (1 into 2), 3-5 (2 into 3): every merge folds one delta away.
        expect(
          merged.slice(3, 6).every((count) => count > 0),
          said,
        ).toBe(true);
        expect(v[3] - v[2], said).toBeLessThan(delta / 2);
        expect(v[5] - v[4], said).toBeLessThan(delta / 2);
        expect(v[6], said).toBeLessThan(v[2] + delta / 2);
        // XVAs: three kept, whatever the number of runs.
        expect(x[6], `XVA bytes: ${x.join(", ")}`).toBeLessThanOrEqual(x[2] * 1.05);
      });

      it("restores a file from each kept delta point as it was at that point's run", () => {
        expect(record.done, "the runs did not all end").toBe(true);
        expect(record.files.length).toBe(3 * RETENTION);
        for (const entry of record.files) expect(entry.got, `after run ${entry.afterRun}, point ${entry.point}`).toBe(entry.expected);
      });

      it("lists exactly the kept points in an empty database after scanRemote", { timeout: 300_000 }, async () => {
        expect(record.done, "the runs did not all end").toBe(true);
        const made = await pointsOn(f.gql, remoteId);
        expect(made).toHaveLength(3 * RETENTION);
        let second: TestCairn | undefined;
        try {
          second = await startTestCairn();
          const token = await second.login();
          const server = second;
          const gql: Gql = async (query, variables) => {
            const result = await server.graphql(query, variables, token);
            if (result.errors) throw new Error(`GraphQL error: ${JSON.stringify(result.errors)}`);
            return result.data;
          };
          expect((await gql("{ restorePoints { totalCount } }")).restorePoints.totalCount).toBe(0);
          const id = await createRemoteOn(gql, peer.input("the same remote"));
          expect((await gql("mutation($id: ID!) { scanRemote(id: $id) }", { id })).scanRemote).toBe(made.length);
          const strip = (points: any[]) => points.map(({ id: _id, run: _run, ...rest }) => rest);
          expect(strip(await pointsOn(gql, id))).toEqual(strip(made));
        } finally {
          await second?.stop();
        }
      });

      it("fails the target whose remote is cut mid-run, naming kind, host and path; the LOCAL target of the job succeeds", {
        timeout: 600_000,
      }, async () => {
        const db = f.vm("db-data");
        const job = await f.createJob({
          name: `${kind} cut`,
          mode: "DELTA",
          selection: { vmUuids: [db.uuid] },
          remoteIds: [f.remoteId, remoteId],
          schedules: runByHand(2),
        });
        const before = await peer.files();
        await f.setFault("export_bytes_per_second", { rate: 1024 * 1024 });
        let run: any;
        try {
          const runId = await f.startRun(job.id, job.schedules[0].id);
          await f.waitForRun(
            runId,
            (r) =>
              r.tasks.some(
                (t: { kind: string; name: string; status: string; progress: number }) =>
                  t.kind === "transfer" && t.name.endsWith(remoteName) && t.status === "RUNNING" && t.progress > 0,
              ),
            120_000,
          );
          await peer.cut();
          run = await f.waitForEnd(runId, 300_000);
        } finally {
          await f.clearFaults();
          await peer.restore();
        }
        expectSuccess(run);
        const vmTask = run.tasks.find((t: { kind: string }) => t.kind === "vm");
        const dropped = vmTask.warnings.find((w: string) => w.startsWith(`${remoteName} dropped:`));
        expect(dropped, saidIn(run)).toBeDefined();
        expect(dropped).toMatch(KIND_WORDS[kind]);
        if (peer.host !== undefined) expect(dropped).toContain(peer.host);
        expect(dropped).toContain(peer.path);
        const transfers = run.tasks.filter((t: { kind: string }) => t.kind === "transfer");
        expect(transfers.map((t: { name: string; status: string }) => [t.name.endsWith(remoteName), t.status]).sort()).toEqual([
          [false, "SUCCESS"],
          [true, "FAILURE"],
        ]);
        const points = await f.restorePoints(job.id);
        expect(points.map((p) => p.remote.id)).toEqual([f.remoteId]);
        // Nothing of the cut run is listed on the peer, by Cairn nor by a scan.
        await f.gql("mutation($id: ID!) { scanRemote(id: $id) }", { id: remoteId });
        expect(await pointsOn(f.gql, remoteId, job.id)).toEqual([]);
        cut.jobId = job.id;
        cut.filesBefore = before;
      });

      it("writes to both targets again once the cut remote is back, leaving no temporary file of the cut run", {
        timeout: 300_000,
      }, async () => {
        expect(cut.jobId, "the cut run did not end as expected").not.toBe("");
        const job = {
          id: cut.jobId,
          schedules: (
            await f.gql<{ job: { schedules: { id: string }[] } }>("query($id: ID!) { job(id: $id) { schedules { id } } }", {
              id: cut.jobId,
            })
          ).job.schedules,
        };
        const before = cut.filesBefore;
        const next = await f.runToEnd(job.id, job.schedules[0].id);
        expectSuccess(next);
        expect(saidIn(next)).not.toMatch(/dropped/);
        expect((await f.restorePoints(job.id)).filter((p) => p.remote.id === remoteId)).toHaveLength(1);
        const after = await peer.files();
        expect([...after.keys()].filter((file) => isTemporaryPath(file) && !before.has(file))).toEqual([]);
      });

      it("leaves nothing half-listed after kill -9 mid-merge and mid-transfer, and the next run cleans up", {
        timeout: 900_000,
      }, async () => {
        if (!killable) {
          killable = await startKillableCairn({ labDiskMb: 16 });
          await killable.start();
        } else if (!killable.running) await killable.start();
        const server = killable;
        const gql: Gql = (query, variables) => server.gql(query, variables);
        const waitForEnd = (runId: string) => server.waitForRun(runId, (r) => ENDED.has(r.status), 300_000);
        const peerId = await createRemoteOn(gql, peer.input(`${remoteName} (killable)`));
        const { srs } = await gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
        const srUuid = srs.find((sr) => sr.name === "Local storage")!.uuid;
        const { vms } = await gql<{ vms: { name: string; uuid: string }[] }>("{ vms { name uuid } }");
        const vmUuid = vms.find((vm) => vm.name === "db-data")!.uuid;
        const diskOf = () => {
          const vm = Object.values(server.xapi.objects.all).find((o) => o.$type === "VM" && o.uuid === vmUuid)!;
          return (vm.VBDs as string[]).map((ref) => server.xapi.getObjectByRef(ref)).find((vbd) => vbd.type === "Disk")!.VDI as string;
        };
        const { createJob: job } = await gql<{ createJob: { id: string; schedules: { id: string }[] } }>(
          "mutation($i: JobInput!) { createJob(input: $i) { id schedules { id } } }",
          {
            i: {
              name: `${kind} kill`,
              mode: "DELTA",
              selection: { vmUuids: [vmUuid] },
              remoteIds: [peerId],
              schedules: runByHand(1),
            },
          },
        );
        const scheduleId = job.schedules[0].id;
        const hashAt = new Map<string, string>();
        const startRun = async () =>
          (
            await gql<{ runJob: { id: string } }>("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", {
              id: job.id,
              s: scheduleId,
            })
          ).runJob.id;
        const change = async (label: string) => {
          await server.xapi.call("lab.scribble", diskOf(), 2, `${kind}-${label}`);
          return String(await server.xapi.call("lab.vdi_sha256", diskOf()));
        };
        const listed = () => pointsOn(gql, peerId, job.id);
        /** Every listed point restores as its run's disk was; and a scan of the remote lists the same. */
        const expectListedRestore = async (what: string) => {
          // What the database lists must be what the remote holds: a scan changes nothing. Soft, so that the restores
          // below still say whether what the remote holds is sound when the listing is not.
          const before = (await listed()).map((p) => p.timestamp);
          await gql("mutation($id: ID!) { scanRemote(id: $id) }", { id: peerId });
          const points = await listed();
          expect
            .soft(before, `${what}: nothing half-listed (the listing before a scanRemote, then after it)`)
            .toEqual(points.map((p) => p.timestamp));
          for (const point of points) {
            const hashes = await restoredHashes(gql, server.xapi, point.id, waitForEnd, srUuid);
            expect(hashes, `${what}: the point of run ${point.run?.id}`).toEqual([hashAt.get(point.run?.id)]);
          }
          return points;
        };
        const mergeFiles = (files: Map<string, number>) => [...files.keys()].filter((file) => /\.merg(e|ing)/.test(file));

        // Run 0: the full every later delta merges into.
        let hash = await change("0");
        let run = await server.runToEnd(job.id, scheduleId);
        expect(run.status, saidIn(run)).toBe("SUCCESS");
        hashAt.set(run.id, hash);

        // Run 1: killed while its retention merges run 0 into it (slowed down through the proxy where there is one).
        hash = await change("1");
        peer.throttle(1024 * 1024);
        let mergeRunId: string;
        let seenMerge: string[] = [];
        try {
          mergeRunId = await startRun();
          // Looked for from the start: on LOCAL nothing slows the merge down, and an event would arrive too late.
          seenMerge = await eventually(
            "a merge to be under way on the remote",
            async () => {
              const found = mergeFiles(await peer.files());
              if (found.length === 0) throw new Error("no merge state on the remote yet");
              return found;
            },
            { timeoutMs: 120_000, intervalMs: kind === "LOCAL" ? 2 : 20 },
          );
          await server.kill();
        } finally {
          peer.throttle(undefined);
        }
        expect(seenMerge.length).toBeGreaterThan(0);
        // Whether the kill landed before the merge ended (on LOCAL nothing slows it down: said, not asserted).
        console.log(
          `${kind}: merge state on the remote right after the kill: ${mergeFiles(await peer.files()).join(", ") || "none (it had ended)"}`,
        );
        hashAt.set(mergeRunId, hash);
        await server.start();
        const afterMergeKill = await server.waitForRun(mergeRunId, (r) => r.status !== "RUNNING", 60_000);
        expect(afterMergeKill.status).toBe("INTERRUPTED");
        const survivors = await expectListedRestore("after the kill mid-merge");
        expect(survivors.length).toBeGreaterThan(0);

        // Run 2: killed mid-transfer.
        const filesBefore = await peer.files();
        hash = await change("2");
        await server.xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 512 * 1024 });
        const transferRunId = await startRun();
        await server.waitForRun(transferRunId, (r) =>
          r.tasks.some(
            (t: { kind: string; status: string; progress: number }) => t.kind === "transfer" && t.status === "RUNNING" && t.progress > 0,
          ),
        );
        await server.kill();
        await server.start();
        const afterTransferKill = await server.waitForRun(transferRunId, (r) => r.status !== "RUNNING", 60_000);
        expect(afterTransferKill.status).toBe("INTERRUPTED");
        expect((await listed()).filter((p) => p.run?.id === transferRunId)).toEqual([]);
        await expectListedRestore("after the kill mid-transfer");
        const leftover = [...(await peer.files()).keys()].filter((file) => !filesBefore.has(file) && !/\.cairn-locks\//.test(file));
        expect(leftover, "files of the run killed mid-transfer").toEqual([]);

        // Run 3 finishes what was left: no merge state, no temporary file, the one kept point restores.
        hash = await change("3");
        run = await server.runToEnd(job.id, scheduleId);
        expect(run.status, saidIn(run)).toBe("SUCCESS");
        hashAt.set(run.id, hash);
        const files = await peer.files();
        expect(mergeFiles(files)).toEqual([]);
        expect([...files.keys()].filter(isTemporaryPath)).toEqual([]);
        const kept = await expectListedRestore("after the next run");
        expect(kept.map((p) => p.run?.id)).toEqual([run.id]);
      });
    });
  });
});
