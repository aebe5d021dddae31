/**
 * Encrypted remotes end to end, on every kind (LOCAL, SMB and NFS merge in place, S3 by composition; `REMOTE_KINDS=LOCAL`
 * runs one), each on its real peer (test/support/remote-peers.ts): a DELTA job whose retention merges, every kept point
 * restored byte-exact, a file restored from each, `scanRemote` into an empty database with the key (and refused with a
 * wrong key or none), every stored file encrypted. On LOCAL: a key change refused while backups are there, and a flipped
 * byte in a backup failing the restore with INTEGRITY naming the file. Last, the keys never appear in the logs, in API
 * answers or in the audit log.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import tarStream from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { knownFiles } from "../../server/lab/known-files.js";
import { KEY_CHECK_FILE } from "../../server/remotes/encrypted/format.js";
import { expectSuccess, startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { isTemporaryPath, peerSkipReason, startRemotePeer, type RemoteKindName, type RemotePeer } from "../support/remote-peers.js";
import { stopAll } from "../support/stop-all.js";

const ALL_KINDS: RemoteKindName[] = ["LOCAL", "SMB", "NFS", "S3"];
const KINDS = process.env.REMOTE_KINDS ? ALL_KINDS.filter((kind) => process.env.REMOTE_KINDS!.split(",").includes(kind)) : ALL_KINDS;
const RUNS = 4;
const RETENTION = 2;
const NOTES = "/home/alice/notes.txt";
const POINT_FIELDS = "id kind vmUuid vmName timestamp chainLength sizeBytes disks { id virtualSize } run { id }";
/** One passphrase per kind, all recognisable in any output. */
const passphraseOf = (kind: string) => `Zebra-Quokka-${kind}-passphrase-7f3a`;

type Gql = <T = any>(query: string, variables?: Record<string, unknown>) => Promise<T>;

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

async function pointsOn(gql: Gql, remoteId: string): Promise<any[]> {
  const data = await gql<{ restorePoints: { nodes: any[] } }>(
    `query($f: RestorePointFilter) { restorePoints(first: 50, filter: $f) { nodes { ${POINT_FIELDS} } } }`,
    { f: { remoteId } },
  );
  return [...data.restorePoints.nodes].sort((a, b) => a.vmUuid.localeCompare(b.vmUuid) || a.timestamp.localeCompare(b.timestamp));
}

/** What a GraphQL call answers: its data, or the text of its errors (to check a refusal's words). */
async function answerOf(server: TestCairn, token: string, query: string, variables: Record<string, unknown>) {
  const result = await server.graphql(query, variables, token);
  return { data: result.data as any, errors: result.errors ? JSON.stringify(result.errors) : undefined };
}

describe("encrypted remotes: backups, merges, restores, file restore, scan", () => {
  let f: BackupFixture;
  let labSrUuid: string;
  let notesNow: Buffer;
  let notesOffset = -1;
  /** Every answer the API gave in these tests, for the "no key anywhere" check. */
  const answers: string[] = [];
  const gql: Gql = async (query, variables) => {
    const data = await f.gql(query, variables);
    answers.push(JSON.stringify(data));
    return data;
  };

  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 8 });
    const { srs } = await f.gql<{ srs: { uuid: string; name: string }[] }>("{ srs { uuid name } }");
    labSrUuid = srs.find((sr) => sr.name === "Local storage")!.uuid;
    notesNow = knownFiles("cairn").ext4.get(NOTES)!;
  }, 180_000);
  afterAll(() => stopAll(() => f?.stop()));

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

  /** Restores a point onto the lab; the run, and the sha256 of each restored disk when it succeeded. */
  async function restore(pointId: string): Promise<{ run: any; hashes: string[] }> {
    const { restoreVm } = await gql<{ restoreVm: { id: string } }>("mutation($i: RestoreInput!) { restoreVm(input: $i) { id } }", {
      i: { restorePointId: pointId, srUuid: labSrUuid },
    });
    const run = await f.waitForEnd(restoreVm.id, 300_000);
    if (run.status !== "SUCCESS") return { run, hashes: [] };
    const vmUuid = String(run.tasks.find((t: { kind: string }) => t.kind === "restore").result.vmUuid);
    await f.xapi.barrier();
    const vm = f.xapi.getObjectByUuid(vmUuid) as unknown as { VBDs: string[] };
    const hashes: string[] = [];
    for (const ref of vm.VBDs) {
      const vbd = f.xapi.getObjectByRef(ref) as unknown as { type: string; VDI: string };
      if (vbd.type === "Disk") hashes.push(String(await f.xapi.call("lab.vdi_sha256", vbd.VDI)));
    }
    return { run, hashes };
  }

  async function fileAt(pointId: string, file: string): Promise<Buffer | undefined> {
    const prepared = await gql<{ restoreFiles: { url: string } }>("mutation($i: FileRestoreInput!) { restoreFiles(input: $i) { url } }", {
      i: { restorePointId: pointId, disk: 0, paths: [file], format: "TAR_GZ" },
    });
    const response = await fetch(`${f.server.url}${prepared.restoreFiles.url}`);
    expect(response.status).toBe(200);
    return (await untarGz(Buffer.from(await response.arrayBuffer()))).get(file);
  }

  const ready: Partial<Record<RemoteKindName, { peer: RemotePeer; remoteId: string }>> = {};

  describe.each(KINDS)("%s", (kind) => {
    const skip = peerSkipReason(kind);
    describe.skipIf(skip !== undefined)(`encrypted ${kind}`, () => {
      let peer: RemotePeer;
      let remoteId: string;
      const passphrase = passphraseOf(kind);
      const remoteName = `encrypted ${kind.toLowerCase()}`;
      beforeAll(async () => {
        peer = await startRemotePeer(kind);
      }, 180_000);
      afterAll(() => peer?.stop());

      it(`${RUNS} DELTA runs with retention ${RETENTION} merge; every kept point restores byte-exact, and a file from each`, {
        timeout: 900_000,
      }, async () => {
        const { createRemote } = await gql<{ createRemote: { id: string; encrypted: boolean } }>(
          "mutation($i: RemoteInput!) { createRemote(input: $i) { id encrypted } }",
          { i: { ...peer.input(remoteName), encryptionKey: passphrase } },
        );
        expect(createRemote.encrypted).toBe(true);
        remoteId = createRemote.id;
        const tested = await gql<{ testRemote: { ok: boolean; error: string | null } }>(
          "mutation($id: ID!) { testRemote(id: $id) { ok error } }",
          { id: remoteId },
        );
        expect(tested.testRemote, tested.testRemote.error ?? "").toMatchObject({ ok: true });

        const db = f.vm("db-data");
        const web = f.vm("web-ext4");
        const [dbDisk] = f.diskRefs(db.ref);
        const job = await f.createJob({
          name: `${kind} encrypted delta`,
          mode: "DELTA",
          selection: { vmUuids: [db.uuid, web.uuid] },
          remoteIds: [remoteId],
          settings: { fullInterval: 20 },
          schedules: [{ cron: "0 3 * * *", exportRetention: RETENTION }],
        });
        const dbHashAt = new Map<string, string>();
        const notesAt = new Map<string, string>();
        let merged = 0;
        for (let i = 0; i < RUNS; i++) {
          if (i > 0) await f.xapi.call("lab.scribble", dbDisk, 1, `${kind}-encrypted-${i}`);
          const notes = (await rewriteNotes(`${kind} enc ${i}`)).toString();
          const hash = String(await f.xapi.call("lab.vdi_sha256", dbDisk));
          const run = await f.runToEnd(job.id, job.schedules[0].id);
          expectSuccess(run);
          dbHashAt.set(run.id, hash);
          notesAt.set(run.id, notes);
          merged += run.tasks
            .filter((t: { kind: string }) => t.kind === "retention")
            .reduce((sum: number, t: { result: { merged?: number } | null }) => sum + (t.result?.merged ?? 0), 0);
        }
        expect(merged, "retention merged deltas into their parents").toBeGreaterThan(0);

        const kept = await pointsOn(gql, remoteId);
        expect(kept).toHaveLength(2 * RETENTION);
        for (const point of kept.filter((p) => p.vmUuid === db.uuid)) {
          const { run, hashes } = await restore(point.id);
          expectSuccess(run);
          expect(hashes, `point of run ${point.run.id} (chain ${point.chainLength})`).toEqual([dbHashAt.get(point.run.id)]);
        }
        for (const point of kept.filter((p) => p.vmUuid === web.uuid)) {
          expect((await fileAt(point.id, NOTES))?.toString(), `notes at run ${point.run.id}`).toBe(notesAt.get(point.run.id));
        }

        // What the peer holds: every file encrypted (the key check file alone in the clear), no temporary left.
        // Restore leases are released just after the restores answer: listed once they are gone.
        const stored = await eventually("the restore leases released", async () => {
          const files = await peer.files();
          return [...files.keys()].some((file) => file.includes(".cairn-locks/")) ? false : files;
        });
        expect([...stored.keys()].filter(isTemporaryPath)).toEqual([]);
        expect(stored.has(KEY_CHECK_FILE)).toBe(true);
        // Backups (metadata and disks), not lock claims: those come and go.
        const some = [...stored.keys()]
          .filter((file) => /\.(json|vhd)$/.test(file) && file !== KEY_CHECK_FILE && !file.includes(".cairn-locks"))
          .slice(0, 4);
        expect(some.length).toBeGreaterThan(0);
        for (const file of some) {
          const copy = join(f.server.dataDir, `peer-copy-${kind}.bin`);
          await peer.copyOut(file, copy);
          const bytes = await readFile(copy);
          expect(bytes.subarray(0, 8).toString("latin1"), file).toBe("CAIRNENC");
          expect(bytes.toString("latin1")).not.toContain("xo-vm-backups");
          expect(bytes.toString("latin1")).not.toContain("conectix");
        }
        ready[kind] = { peer, remoteId };
      });

      it("scanRemote on another Cairn with an empty database finds every kept point; a wrong key or none is refused", {
        timeout: 300_000,
      }, async () => {
        expect(ready[kind], "the runs did not all end").toBeDefined();
        const made = await pointsOn(gql, remoteId);
        let second: TestCairn | undefined;
        try {
          second = await startTestCairn();
          const token = await second.login();
          const wrong = await answerOf(second, token, "mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
            i: { ...peer.input("wrong key"), encryptionKey: "not the passphrase at all" },
          });
          expect(wrong.errors).toContain("The key for remote wrong key is wrong");
          const none = await answerOf(second, token, "mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
            i: peer.input("no key"),
          });
          expect(none.errors).toContain("is encrypted");
          const created = await answerOf(second, token, "mutation($i: RemoteInput!) { createRemote(input: $i) { id encrypted } }", {
            i: { ...peer.input("the same remote"), encryptionKey: passphrase },
          });
          expect(created.errors).toBeUndefined();
          const id = created.data.createRemote.id;
          const scanned = await answerOf(second, token, "mutation($id: ID!) { scanRemote(id: $id) }", { id });
          expect(scanned.errors).toBeUndefined();
          expect(scanned.data.scanRemote).toBe(made.length);
          const serverGql: Gql = async (query, variables) => (await answerOf(second!, token, query, variables ?? {})).data;
          const strip = (points: any[]) => points.map(({ id: _id, run: _run, ...rest }) => rest);
          expect(strip(await pointsOn(serverGql, id))).toEqual(strip(made));
          expect(second.logs.join("\n")).not.toContain(passphrase);
          expect(second.logs.join("\n")).not.toContain("not the passphrase at all");
        } finally {
          await second?.stop();
        }
      });

      it.skipIf(kind !== "LOCAL")("refuses to change the key while the remote holds backups", async () => {
        const local = ready[kind];
        expect(local, "the runs did not all end").toBeDefined();
        const result = await f.server.graphql(
          "mutation($id: ID!, $i: RemoteInput!) { updateRemote(id: $id, input: $i) { id } }",
          { id: local!.remoteId, i: { ...local!.peer.input("encrypted local"), encryptionKey: "another passphrase entirely" } },
          f.token,
        );
        expect(JSON.stringify(result.errors)).toMatch(/CONFLICT/);
        expect(JSON.stringify(result.errors)).toContain("cannot change while it holds backups");
      });

      it.skipIf(kind !== "LOCAL")(
        "fails a restore with INTEGRITY naming the file when a byte of a backup was flipped",
        { timeout: 300_000 },
        async () => {
          const local = ready[kind];
          expect(local, "the runs did not all end").toBeDefined();
          const db = f.vm("db-data");
          const point = (await pointsOn(gql, local!.remoteId)).filter((p) => p.vmUuid === db.uuid).at(-1)!;
          const stored = await local!.peer.files();
          const vhd = [...stored.keys()]
            .filter((file) => file.includes(db.uuid) && file.endsWith(".vhd"))
            .sort()
            .at(-1)!;
          const path = join(local!.peer.path, vhd);
          const bytes = await readFile(path);
          bytes[Math.floor(bytes.length / 2)] ^= 0x40;
          await writeFile(path, bytes);
          const { run } = await restore(point.id);
          expect(run.status).toBe("FAILURE");
          const said = [
            run.error ?? "",
            ...run.tasks.flatMap((t: { message: string | null; warnings: string[] }) => [t.message ?? "", ...t.warnings]),
          ].join("\n");
          expect(said).toMatch(/INTEGRITY/);
          expect(said).toContain(vhd.split("/").at(-1));
        },
      );
    });
  });

  describe("any kind", () => {
    it("never shows or logs a key: not in the logs, not in any API answer, not in the audit log", async () => {
      const { remotes } = await gql<{ remotes: unknown[] }>("{ remotes { id name kind location options username encrypted } }");
      expect(JSON.stringify(remotes)).toContain('"encrypted":true');
      const audit = await f.gql<{ auditLog: { nodes: unknown[] } }>("{ auditLog(first: 200) { nodes { action arguments message } } }");
      const everything = [...f.server.logs, ...answers, JSON.stringify(audit)].join("\n");
      for (const kind of KINDS) expect(everything).not.toContain(passphraseOf(kind));
      expect(everything).not.toContain("another passphrase entirely");
    });
  });
});
