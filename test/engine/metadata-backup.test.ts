/**
 * METADATA jobs against the lab: each pool's database (`GET /pool/xmldbdump`) and Cairn's configuration are written to the
 * job's remotes under `metadata/` (server/repository/FORMAT.md), listed by `metadataBackups`, kept by retention; a pool's
 * metadata restored (`PUT /pool/xmldbdump`) puts the pool back as it was; the configuration holds secrets only on an
 * encrypted remote; a VM scan of the remote does not take these folders for VM backups.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Xapi } from "xen-api";
import { createRemote } from "../../server/remotes/create-remote.js";
import { scanRepository } from "../../server/repository/scanner.js";
import { openDatabase } from "../api/api-assertions.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { eventually } from "../support/eventually.js";

type Rec = Record<string, any>;

const PASSPHRASE = "metadata test passphrase, long enough";
const BACKUP_FIELDS = "id kind poolId poolUuid poolName remoteId remoteName path timestamp sizeBytes secretsIncluded jobId runId";

/** A dump without its generation count, which every call to the pool moves on. */
const content = (xml: string) => xml.replace(/<pair key="generation_count" value="\d+"\/>/, "");

describe("metadata backups: pool databases and Cairn's configuration on remotes", () => {
  let f: BackupFixture;
  let encryptedDir: string;
  let encryptedRemoteId: string;
  let plainJob: { id: string; schedules: { id: string }[] };
  let poolUuid: string;
  let labPassword: string;

  beforeAll(async () => {
    f = await startBackupFixture();
    labPassword = f.server.cairn.labs[0].password;
    encryptedDir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-metadata-encrypted-"));
    const created = await f.gql<{ createRemote: { id: string } }>("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
      i: { name: "vault", kind: "LOCAL", location: encryptedDir, encryptionKey: PASSPHRASE },
    });
    encryptedRemoteId = created.createRemote.id;
    poolUuid = String(Object.values(f.xapi.objects.all).find((o) => o.$type === "pool")!.uuid);
    plainJob = await f.createJob({
      name: "pool metadata",
      mode: "METADATA",
      selection: { smart: { poolIds: [] } },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 4 * * *", exportRetention: 2 }],
    });
  });

  afterAll(async () => {
    await f?.stop();
    if (encryptedDir) await fs.rm(encryptedDir, { recursive: true, force: true });
  });

  async function dumpNow(client: Xapi): Promise<string> {
    const lab = f.server.cairn.labs[0];
    const response = await fetch(`${lab.url}/pool/xmldbdump?session_id=${client.sessionId}`);
    expect(response.status).toBe(200);
    return response.text();
  }

  async function backups(filter: Rec = {}): Promise<Rec[]> {
    const data = await f.gql<{ metadataBackups: Rec[] }>(
      `query($r: ID, $p: ID, $k: MetadataBackupKind) { metadataBackups(remoteId: $r, poolId: $p, kind: $k) { ${BACKUP_FIELDS} } }`,
      { r: filter.remoteId ?? null, p: filter.poolId ?? null, k: filter.kind ?? null },
    );
    return data.metadataBackups;
  }

  it("writes the pool's dump, byte for byte what XAPI serves, and the configuration, with a task each and their bytes", async () => {
    const run = await f.runToEnd(plainJob.id, plainJob.schedules[0].id);
    expectSuccess(run);
    const pool = run.tasks.find((t: Rec) => t.kind === "pool");
    const configuration = run.tasks.find((t: Rec) => t.kind === "configuration");
    expect(pool).toMatchObject({ status: "SUCCESS", name: f.server.cairn.labs[0].poolName });
    expect(configuration).toMatchObject({ status: "SUCCESS", name: "Cairn's configuration" });
    expect(Number(pool.sizeBytes)).toBeGreaterThan(1000);
    expect(Number(run.transferredBytes)).toBe(Number(pool.sizeBytes) + Number(configuration.sizeBytes));
    expect(run.tasks.flatMap((t: Rec) => t.warnings).join(" ")).toMatch(/Remote local is not encrypted/);

    const [poolBackup] = await backups({ remoteId: f.remoteId, kind: "POOL" });
    expect(poolBackup).toMatchObject({ poolUuid, remoteName: "local", jobId: plainJob.id, runId: run.id });
    expect(poolBackup.path).toMatch(new RegExp(`^metadata/pool/${poolUuid}/\\d{8}T\\d{6}Z$`));
    const stored = await fs.readFile(path.join(f.remoteDir, poolBackup.path, "pool-database.xml"), "utf8");
    expect(content(stored)).toBe(content(await dumpNow(f.xapi)));
    const description = JSON.parse(await fs.readFile(path.join(f.remoteDir, poolBackup.path, "metadata.json"), "utf8"));
    expect(description).toMatchObject({ format: "cairn-metadata-backup", kind: "POOL", sizeBytes: Buffer.byteLength(stored) });

    // The VM scanner reads xo-vm-backups/ only: the metadata folder is no VM backup, and no problem either.
    const remote = createRemote({ kind: "LOCAL", location: f.remoteDir });
    const scan = await scanRepository(remote);
    await remote.close();
    expect(JSON.stringify(scan)).not.toContain("metadata/");
  });

  it("keeps the newest exportRetention backups per pool and of the configuration", async () => {
    for (let i = 0; i < 2; i++) expectSuccess(await f.runToEnd(plainJob.id, plainJob.schedules[0].id));
    const onRemote = async (dir: string) =>
      (await fs.readdir(path.join(f.remoteDir, dir))).filter((name) => /^\d{8}T\d{6}Z$/.test(name)).sort();
    expect(await onRemote(`metadata/pool/${poolUuid}`)).toHaveLength(2);
    expect(await onRemote("metadata/cairn")).toHaveLength(2);
    const listed = await backups({ remoteId: f.remoteId });
    expect(
      listed
        .filter((b) => b.kind === "POOL")
        .map((b) => b.path.split("/").pop())
        .sort(),
    ).toEqual(await onRemote(`metadata/pool/${poolUuid}`));
    expect(listed.filter((b) => b.kind === "CAIRN")).toHaveLength(2);

    // The index is rebuilt from the remote: rows lost, a scan brings them back.
    const db = openDatabase(f.server);
    await db.metadataBackup.deleteMany({ where: { remoteId: f.remoteId } });
    await db.$disconnect();
    expect(await backups({ remoteId: f.remoteId })).toHaveLength(0);
    const count = await f.gql<{ scanMetadataBackups: number }>("mutation($r: ID!) { scanMetadataBackups(remoteId: $r) }", {
      r: f.remoteId,
    });
    expect(count.scanMetadataBackups).toBe(4);
    expect((await backups({ remoteId: f.remoteId })).map((b) => b.path).sort()).toEqual(listed.map((b) => b.path).sort());
  });

  it("keeps secrets out of a configuration on a plain remote, and in one on an encrypted remote", async () => {
    const [plain] = await backups({ remoteId: f.remoteId, kind: "CAIRN" });
    expect(plain.secretsIncluded).toBe(false);
    const plainText = await fs.readFile(path.join(f.remoteDir, plain.path, "configuration.json"), "utf8");
    const configuration = JSON.parse(plainText);
    expect(configuration.jobs.map((j: Rec) => j.name)).toContain("pool metadata");
    expect(configuration.remotes.find((r: Rec) => r.name === "vault")).toMatchObject({ encrypted: true });
    expect(configuration.users.find((u: Rec) => u.username === "admin").passwordHash).toBeTruthy();
    expect(plainText).not.toContain(labPassword);
    expect(plainText).not.toContain(PASSPHRASE);

    const job = await f.createJob({
      name: "configuration to the vault",
      mode: "METADATA",
      selection: { smart: { poolIds: [] } },
      remoteIds: [encryptedRemoteId],
      schedules: [{ cron: "0 5 * * *", exportRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const [sealed] = await backups({ remoteId: encryptedRemoteId, kind: "CAIRN" });
    expect(sealed.secretsIncluded).toBe(true);
    // On the disk: ciphertext, no secret in the clear.
    const raw = await fs.readFile(path.join(encryptedDir, sealed.path, "configuration.json"));
    expect(raw.includes(Buffer.from(labPassword))).toBe(false);
    expect(raw.includes(Buffer.from(PASSPHRASE))).toBe(false);
    // Through the key: the secrets are there.
    const vault = createRemote({ kind: "LOCAL", location: encryptedDir, encryptionKey: PASSPHRASE });
    const text = (await vault.readFile(`${sealed.path}/configuration.json`)).toString("utf8");
    await vault.close();
    expect(text).toContain(labPassword);
    expect(text).toContain(PASSPHRASE);
  });

  it("restores a pool's metadata onto the pool: a renamed VM has its name back, and Cairn reconnects", async () => {
    const [newest] = await backups({ remoteId: f.remoteId, kind: "POOL" });
    const vm = f.vm("web-ext4");
    await f.xapi.call("VM.set_name_label", vm.ref, "renamed by the test");
    const restored = await f.gql<{ restorePoolMetadata: { poolName: string; message: string } }>(
      "mutation($id: ID!) { restorePoolMetadata(id: $id) { poolName message } }",
      { id: newest.id },
    );
    expect(restored.restorePoolMetadata.message).toMatch(/toolstack restarts/);
    const lab = f.server.cairn.labs[0];
    await eventually("the pool to serve the restored database", async () => {
      const client = createClient({ url: lab.url, auth: { user: lab.user, password: lab.password }, allowUnauthorized: true }) as Xapi;
      try {
        await client.connect();
        const record = (await client.call("VM.get_record", vm.ref)) as Rec;
        expect(record.name_label).toBe("web-ext4");
      } finally {
        await client.disconnect().catch(() => undefined);
      }
    });
    // Cairn's own connection came back by itself, and sees the restored name.
    await eventually(
      "Cairn to reconnect to the pool and see the VM's name back",
      async () => {
        const data = await f.gql<{ vms: Rec[] }>("{ vms { uuid name } }");
        expect(data.vms.find((v) => v.uuid === vm.uuid)?.name).toBe("web-ext4");
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
  });

  it("refuses, with a sentence, to restore a configuration backup onto a pool", async () => {
    const [configuration] = await backups({ remoteId: f.remoteId, kind: "CAIRN" });
    const result = await f.server.graphql(
      "mutation($id: ID!) { restorePoolMetadata(id: $id) { message } }",
      { id: configuration.id },
      f.token,
    );
    expect(result.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
    expect(result.errors?.[0].message).toMatch(/is Cairn's configuration, not a pool's/);
  });
});
