/**
 * The disaster-recovery drill: Cairn A (jobs, schedules, remotes, a pool, users) backs up its configuration with a METADATA
 * job to an encrypted local remote and to a plain one; Cairn B, freshly installed on a database of its own, is pointed at
 * the encrypted remote (not registered in B), lists its configuration backups and restores the newest: the same jobs and
 * schedules (with the ids they had), remotes with their secrets, the pool connected, users signing in with their
 * passwords. B, no longer empty, refuses a second restore with a sentence. Cairn C restores from the plain remote: the
 * remotes and the pool come back without their secrets, named in needsSecrets.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";

type Rec = Record<string, any>;

const PASSPHRASE = "the drill's passphrase, long enough";
const JOBS = `{ jobs { id name mode enabled remotes { id name } schedules { id name cron timezone exportRetention enabled } } }`;
const LIST = `query($r: DrillRemoteInput!) { configurationBackups(remote: $r) { path timestamp sizeBytes secretsIncluded jobName } }`;
const RESTORE = `mutation($i: ConfigurationRestoreInput!) { restoreConfiguration(input: $i) {
  backup { path secretsIncluded } users pools remotes jobs schedules kept needsSecrets message } }`;

describe("restoreConfiguration: the disaster-recovery drill into an empty Cairn", () => {
  let a: BackupFixture;
  let b: TestCairn;
  let c: TestCairn;
  let bToken: string;
  let vaultDir: string;
  let offsiteDir: string;
  let jobsOfA: Rec[];
  let labPoolName: string;
  const vault = () => ({ kind: "LOCAL", location: vaultDir, encryptionKey: PASSPHRASE });

  async function ask(server: TestCairn, token: string, query: string, variables?: Rec) {
    return server.graphql(query, variables, token);
  }

  beforeAll(async () => {
    vaultDir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-drill-vault-"));
    offsiteDir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-drill-offsite-"));
    a = await startBackupFixture();
    labPoolName = a.server.cairn.labs[0].poolName;
    const vaultId = (
      await a.gql<{ createRemote: { id: string } }>("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
        i: { name: "vault", ...vault() },
      })
    ).createRemote.id;
    const offsiteId = (
      await a.gql<{ createRemote: { id: string } }>("mutation($i: RemoteInput!) { createRemote(input: $i) { id } }", {
        i: { name: "offsite", kind: "LOCAL", location: offsiteDir },
      })
    ).createRemote.id;
    await createUser(a.server, "olga", "OPERATOR", "olga's own password");
    await createUser(a.server, "vic", "VIEWER", "vic's own password");
    const pools = await a.gql<{ pools: { id: string; name: string }[] }>("{ pools { id name } }");
    await a.createJob({
      name: "nightly delta",
      mode: "DELTA",
      selection: { smart: { poolIds: [pools.pools[0].id], tagsAny: ["prod"] } },
      remoteIds: [a.remoteId, offsiteId],
      schedules: [
        { name: "night", cron: "0 2 * * *", timezone: "Europe/Paris", exportRetention: 7 },
        { name: "sunday", cron: "0 6 * * 0", exportRetention: 4, enabled: false },
      ],
    });
    const metadata = await a.createJob({
      name: "metadata",
      mode: "METADATA",
      selection: { smart: { poolIds: [] } },
      remoteIds: [vaultId, offsiteId],
      schedules: [{ cron: "30 1 * * *", exportRetention: 5 }],
    });
    expectSuccess(await a.runToEnd(metadata.id, metadata.schedules[0].id));
    jobsOfA = (await a.gql<{ jobs: Rec[] }>(JOBS)).jobs;

    b = await startTestCairn();
    bToken = await b.login();
    c = await startTestCairn();
  });

  afterAll(async () => {
    await stopAll(
      () => c?.stop(),
      () => b?.stop(),
      () => a?.stop(),
    );
    for (const dir of [vaultDir, offsiteDir]) if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("lists the configuration backups of a remote B does not know, and says so when the key is wrong", async () => {
    const listed = await ask(b, bToken, LIST, { r: vault() });
    expect(listed.errors).toBeUndefined();
    expect(listed.data.configurationBackups).toHaveLength(1);
    expect(listed.data.configurationBackups[0]).toMatchObject({ secretsIncluded: true, jobName: "metadata" });

    const wrong = await ask(b, bToken, LIST, { r: { ...vault(), encryptionKey: "not the passphrase at all" } });
    expect(wrong.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
    expect(wrong.errors?.[0].message).toMatch(/The key for the LOCAL remote at .* is wrong/);
  });

  it("restores jobs, schedules, remotes with their secrets, the pool and the users into the empty Cairn B", async () => {
    const restored = await ask(b, bToken, RESTORE, { i: { remote: vault() } });
    expect(restored.errors).toBeUndefined();
    const result = restored.data.restoreConfiguration;
    expect(result.backup.secretsIncluded).toBe(true);
    expect(result.jobs.sort()).toEqual(["metadata", "nightly delta"]);
    expect(result.remotes.sort()).toEqual(["local", "offsite", "vault"]);
    expect(result.pools).toEqual([labPoolName]);
    expect(result.users.sort()).toEqual(["olga", "vic"]);
    expect(result.schedules).toBe(3);
    expect(result.needsSecrets).toEqual([]);
    expect(result.kept).toEqual([expect.stringMatching(/^User admin already exists here: kept/)]);
    expect(result.message).toMatch(/^Restored the configuration of .*: 2 users, 1 pool, 3 remotes, 2 jobs with 3 schedules\.$/);

    // Jobs and schedules come back with the ids they had (so runs, restore points and reports on the remotes still name them).
    const jobsOfB = (await ask(b, bToken, JOBS)).data.jobs;
    const byName = (jobs: Rec[]) => [...jobs].sort((x, y) => x.name.localeCompare(y.name));
    expect(byName(jobsOfB)).toEqual(byName(jobsOfA));

    // Remotes with their secrets: the encrypted one opens with the key restored (a test reads and writes through it).
    const remotes = (await ask(b, bToken, "{ remotes { id name enabled encrypted } }")).data.remotes;
    const vaultRow = remotes.find((r: Rec) => r.name === "vault");
    expect(vaultRow).toMatchObject({ enabled: true, encrypted: true });
    const tested = await ask(b, bToken, "mutation($id: ID!) { testRemote(id: $id) { ok error } }", { id: vaultRow.id });
    expect(tested.data.testRemote).toEqual({ ok: true, error: null });
    // B lists the metadata backups the restored remotes hold.
    const held = await ask(b, bToken, "query($r: ID) { metadataBackups(remoteId: $r) { kind } }", { r: vaultRow.id });
    expect(held.data.metadataBackups.map((m: Rec) => m.kind).sort()).toEqual(["CAIRN", "POOL"]);

    // The pool, with its password, connects.
    await eventually(
      "the restored pool to connect",
      async () => {
        const pools = (await ask(b, bToken, "{ pools { name status } }")).data.pools;
        expect(pools).toEqual([{ name: labPoolName, status: "CONNECTED" }]);
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );

    // Users sign in with their own passwords, with their roles.
    const olga = await b.login("olga", "olga's own password");
    const me = await ask(b, olga, "{ me { username role } }");
    expect(me.data.me).toEqual({ username: "olga", role: "OPERATOR" });
    await b.login("vic", "vic's own password");
  });

  it("refuses a restore into a Cairn that is no longer empty, with a sentence naming what is there", async () => {
    const again = await ask(b, bToken, RESTORE, { i: { remote: vault() } });
    expect(again.errors?.[0].extensions?.code).toBe("CONFLICT");
    expect(again.errors?.[0].message).toBe(
      "This Cairn is not empty: it has 2 jobs (metadata, nightly delta). A configuration is restored only into an empty Cairn (no job, no restore point), so that nothing here is overwritten: restore it into a freshly installed Cairn, or remove these first.",
    );
  });

  it("from a plain remote: no secret in the backup, and the restore names what needs its secret again", async () => {
    const cToken = await c.login();
    const restored = await ask(c, cToken, RESTORE, { i: { remote: { kind: "LOCAL", location: offsiteDir } } });
    expect(restored.errors).toBeUndefined();
    const result = restored.data.restoreConfiguration;
    expect(result.backup.secretsIncluded).toBe(false);
    expect(result.needsSecrets.sort()).toEqual([
      `Pool ${labPoolName}: enter its password again (edit the pool), then it connects.`,
      "Remote vault: enter its encryption key again (edit the remote), then enable it.",
    ]);
    const remotes = (await ask(c, cToken, "{ remotes { name enabled encrypted } }")).data.remotes;
    expect(remotes.find((r: Rec) => r.name === "vault")).toEqual({ name: "vault", enabled: false, encrypted: false });
    expect(remotes.find((r: Rec) => r.name === "offsite")).toEqual({ name: "offsite", enabled: true, encrypted: false });
  });
});
