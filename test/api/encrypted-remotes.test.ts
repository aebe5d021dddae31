/**
 * The API of encrypted remotes, on LOCAL folders: the key is write-only and sealed (never returned, never stored in the
 * clear), a short passphrase and a folder of plain files are refused on `input.encryptionKey`, a wrong key is refused by
 * createRemote, testRemote and scanRemote with "The key for remote ... is wrong", a plain remote over an encrypted folder
 * is refused, and the key of an empty remote can change or go while that of a remote holding backups cannot.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { KEY_CHECK_FILE } from "../../server/remotes/encrypted/format.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";

const PASSPHRASE = "Pelican-Harbour-Lantern-42";
const OTHER = "Otter-Meadow-Compass-17";
const FIELDS = "id name encrypted status lastTest { ok error }";
const CREATE = `mutation($i: RemoteInput!) { createRemote(input: $i) { ${FIELDS} } }`;
const UPDATE = `mutation($id: ID!, $i: RemoteInput!) { updateRemote(id: $id, input: $i) { ${FIELDS} } }`;
const TEST = "mutation($id: ID!) { testRemote(id: $id) { ok error } }";
const SCAN = "mutation($id: ID!) { scanRemote(id: $id) }";

describe("encrypted remotes through the API", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let root: string;
  const gql = (query: string, variables: Record<string, unknown>) => server.graphql(query, variables, admin);
  const folder = async (name: string) => {
    const dir = path.join(root, name);
    await fs.mkdir(dir);
    return dir;
  };

  beforeAll(async () => {
    server = await startTestCairn();
    admin = await server.login();
    db = openDatabase(server);
    root = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-encrypted-api-"));
  }, 120_000);
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
      () => (root ? fs.rm(root, { recursive: true, force: true }) : undefined),
    ),
  );

  it("creates an encrypted remote: key sealed in the database, never returned, key check file written", async () => {
    const location = await folder("vault");
    const created = expectData(await gql(CREATE, { i: { name: "vault", kind: "LOCAL", location, encryptionKey: PASSPHRASE } })) as any;
    expect(created.createRemote).toMatchObject({ name: "vault", encrypted: true });
    expect(await fs.readdir(location)).toEqual([KEY_CHECK_FILE]);
    const row = await db.remote.findUniqueOrThrow({ where: { id: created.createRemote.id } });
    expect(row.encryptionKeySealed).toMatch(/^v1:/);
    expect(JSON.stringify(row)).not.toContain(PASSPHRASE);
    const tested = expectData(await gql(TEST, { id: row.id })) as any;
    expect(tested.testRemote).toEqual({ ok: true, error: null });
    expect(await fs.readdir(location)).toEqual([KEY_CHECK_FILE]);
    const plain = expectData(await gql(CREATE, { i: { name: "plain", kind: "LOCAL", location: await folder("plain") } })) as any;
    expect(plain.createRemote.encrypted).toBe(false);
  });

  it("refuses a short passphrase, and a folder that already holds plain files, on input.encryptionKey", async () => {
    const short = expectError(
      await gql(CREATE, { i: { name: "short", kind: "LOCAL", location: await folder("short"), encryptionKey: "tooshort" } }),
      "BAD_USER_INPUT",
      "input.encryptionKey",
    );
    expect(short.message).toContain("at least 12 characters");
    const used = await folder("used");
    await fs.writeFile(path.join(used, "notes.txt"), "plain");
    const refused = expectError(
      await gql(CREATE, { i: { name: "used", kind: "LOCAL", location: used, encryptionKey: PASSPHRASE } }),
      "BAD_USER_INPUT",
      "input.encryptionKey",
    );
    expect(refused.message).toContain("not encrypted");
    expect(await fs.readdir(used)).toEqual(["notes.txt"]);
  });

  it("says the key is wrong at createRemote, testRemote and scanRemote, and refuses a plain remote over an encrypted folder", async () => {
    const location = (await db.remote.findUniqueOrThrow({ where: { name: "vault" } })).location;
    const wrong = await gql(CREATE, { i: { name: "vault again", kind: "LOCAL", location, encryptionKey: OTHER } });
    expect(expectError(wrong, "BAD_USER_INPUT", "input.encryptionKey").message).toContain("The key for remote vault again is wrong");
    const none = await gql(CREATE, { i: { name: "vault plain", kind: "LOCAL", location } });
    expect(expectError(none, "BAD_USER_INPUT", "input.encryptionKey").message).toContain("is encrypted");
    // A stored key that no longer fits (the folder was encrypted again by someone else): test and scan say so.
    const other = await folder("other");
    const created = expectData(
      await gql(CREATE, { i: { name: "other", kind: "LOCAL", location: other, encryptionKey: PASSPHRASE } }),
    ) as any;
    await fs.rm(path.join(other, KEY_CHECK_FILE));
    const replaced = expectData(await gql(CREATE, { i: { name: "other2", kind: "LOCAL", location: other, encryptionKey: OTHER } })) as any;
    expect(replaced.createRemote.encrypted).toBe(true);
    const tested = expectData(await gql(TEST, { id: created.createRemote.id })) as any;
    expect(tested.testRemote.ok).toBe(false);
    expect(tested.testRemote.error).toContain("The key for remote other is wrong");
    const scanned = await gql(SCAN, { id: created.createRemote.id });
    expect(scanned.errors?.[0].message).toContain("The key for remote other is wrong");
    for (const answer of [wrong, none, tested, scanned]) expect(JSON.stringify(answer)).not.toMatch(new RegExp(`${PASSPHRASE}|${OTHER}`));
  });

  it("changes or removes the key of an empty remote, and refuses to while it holds backups", async () => {
    const row = await db.remote.findUniqueOrThrow({ where: { name: "vault" } });
    const input = { name: "vault", kind: "LOCAL", location: row.location };
    // Absent: the key is kept (the key check file still opens with it).
    const before = await fs.readFile(path.join(row.location, KEY_CHECK_FILE), "utf8");
    expect((expectData(await gql(UPDATE, { id: row.id, i: input })) as any).updateRemote.encrypted).toBe(true);
    expect(await fs.readFile(path.join(row.location, KEY_CHECK_FILE), "utf8")).toBe(before);
    expect((expectData(await gql(TEST, { id: row.id })) as any).testRemote).toEqual({ ok: true, error: null });
    // Another key, on an empty remote: a new key check file.
    expect((expectData(await gql(UPDATE, { id: row.id, i: { ...input, encryptionKey: OTHER } })) as any).updateRemote.encrypted).toBe(true);
    expect(await fs.readFile(path.join(row.location, KEY_CHECK_FILE), "utf8")).not.toBe(before);
    // "": plain again.
    expect((expectData(await gql(UPDATE, { id: row.id, i: { ...input, encryptionKey: "" } })) as any).updateRemote.encrypted).toBe(false);
    expect(await fs.readdir(row.location)).toEqual([]);
    // Encrypted again, then backups written to it: the key is fixed (the engine test covers indexed restore points).
    expectData(await gql(UPDATE, { id: row.id, i: { ...input, encryptionKey: PASSPHRASE } }));
    await fs.mkdir(path.join(row.location, "xo-vm-backups"));
    await fs.writeFile(path.join(row.location, "xo-vm-backups", "placeholder"), "x");
    const refused = expectError(await gql(UPDATE, { id: row.id, i: { ...input, encryptionKey: OTHER } }), "CONFLICT");
    expect(refused.message).toContain("cannot change while it holds backups");
    const removing = expectError(await gql(UPDATE, { id: row.id, i: { ...input, encryptionKey: "" } }), "CONFLICT");
    expect(removing.message).toContain("xo-vm-backups");
  });
});
