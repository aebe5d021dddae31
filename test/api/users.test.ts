/**
 * User management (issue 10, "Users"): an ADMIN creates users with a role, changes roles, disables, deletes them (never the
 * last ADMIN) and resets passwords; everyone changes their own password and manages their own sessions. Whatever kills or
 * narrows a credential takes effect on the next request and signals open sockets (onCredentialsChanged). Also "The first
 * admin's password": ADMIN_PASSWORD on a later start resets a lost admin password.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startCairn, type RunningCairn } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import type { Db } from "../../server/db/prisma.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { graphql } from "../support/graphql.js";
import { stopAll } from "../support/stop-all.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";

const ME = graphql("{ me { id username role disabled createdAt } }");
const USERS = graphql("{ users { id username role disabled createdAt } }");
const CREATE_USER = graphql("mutation($input: CreateUserInput!) { createUser(input: $input) { id username role disabled createdAt } }");
const UPDATE_USER = graphql(
  "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id username role disabled } }",
);
const DELETE_USER = graphql("mutation($id: ID!) { deleteUser(id: $id) }");
const RESET_PASSWORD = graphql("mutation($id: ID!, $password: String!) { resetUserPassword(id: $id, password: $password) }");
const CHANGE_PASSWORD = graphql("mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }");
const SESSIONS = graphql("query($userId: ID) { sessions(userId: $userId) { id current createdFrom } }");
const REVOKE_SESSION = graphql("mutation($id: ID!) { revokeSession(id: $id) }");
const CREATE_TOKEN = graphql("mutation($name: String!, $role: Role!) { createApiToken(name: $name, role: $role) { id token } }");

describe("user management", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let credentialChanges = 0;

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    admin = await server.login();
    server.cairn.services.auth.onCredentialsChanged(() => credentialChanges++);
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  const create = async (username: string, role: "ADMIN" | "OPERATOR" | "VIEWER", password = `${username}-password`) => {
    const user = expectData(await server.graphql(CREATE_USER, { input: { username, password, role } }, admin)).createUser;
    return { ...user, password };
  };
  const token = async (session: string, name = "script") =>
    expectData(await server.graphql(CREATE_TOKEN, { name, role: "VIEWER" }, session)).createApiToken.token;
  const isSignedIn = async (credential: string) => (await server.graphql(ME, {}, credential)).data?.me != null;
  const adminId = async () => expectData(await server.graphql(ME, {}, admin)).me!.id;

  it("lets an ADMIN create users with a role, who then sign in; `users` lists everyone and never a secret", async () => {
    const olga = await create("olga.ops@example.net", "OPERATOR", "olga-ops-password");
    expect(olga).toMatchObject({ username: "olga.ops@example.net", role: "OPERATOR", disabled: false });
    expect(Date.parse(olga.createdAt)).not.toBeNaN();

    const session = await server.login("olga.ops@example.net", "olga-ops-password");
    expect(expectData(await server.graphql(ME, {}, session)).me).toMatchObject({ id: olga.id, role: "OPERATOR", disabled: false });

    const users = expectData(await server.graphql(USERS, {}, admin)).users;
    expect(users.map((u) => u.username)).toEqual(expect.arrayContaining(["admin", "olga.ops@example.net"]));
    expect(JSON.stringify(users)).not.toMatch(/scrypt|password/);
    expectError(await server.graphql("{ users { passwordHash } }", {}, admin), "GRAPHQL_VALIDATION_FAILED");
  });

  it("refuses bad user names and passwords naming the field, and a name taken in any case with CONFLICT naming it", async () => {
    const before = await db.user.count();
    const bad: [{ username: string; password: string; role: "VIEWER" }, string][] = [
      [{ username: "", password: "long-enough-pw", role: "VIEWER" }, "input.username"],
      [{ username: "has space", password: "long-enough-pw", role: "VIEWER" }, "input.username"],
      [{ username: "x".repeat(65), password: "long-enough-pw", role: "VIEWER" }, "input.username"],
      [{ username: "naïve", password: "long-enough-pw", role: "VIEWER" }, "input.username"],
      [{ username: "semi;colon", password: "long-enough-pw", role: "VIEWER" }, "input.username"],
      [{ username: "shorty", password: "short", role: "VIEWER" }, "input.password"],
      [{ username: "mirror.name", password: "Mirror.Name", role: "VIEWER" }, "input.password"],
      [{ username: "huge", password: "p".repeat(2000), role: "VIEWER" }, "input.password"],
    ];
    for (const [input, field] of bad) {
      const error = expectError(await server.graphql(CREATE_USER, { input }, admin), "BAD_USER_INPUT", field);
      expect(error.message.startsWith(`${field}: `), error.message).toBe(true);
    }
    const taken = expectError(
      await server.graphql(CREATE_USER, { input: { username: "ADMIN", password: "long-enough-pw", role: "VIEWER" } }, admin),
      "CONFLICT",
    );
    expect(taken.message).toBe("A user named admin already exists: choose another user name.");
    expect(await db.user.count()).toBe(before);
  });

  it("refuses user management to anyone below ADMIN, including an ADMIN's own OPERATOR token", async () => {
    const operator = await createUser(server, "otto-operator", "OPERATOR");
    const adminOperatorToken = expectData(await server.graphql(CREATE_TOKEN, { name: "ops", role: "OPERATOR" }, admin)).createApiToken
      .token;
    const id = await adminId();
    for (const credential of [operator, adminOperatorToken]) {
      expectError(await server.graphql(USERS, {}, credential), "FORBIDDEN");
      expectError(
        await server.graphql(CREATE_USER, { input: { username: "sneaky", password: "sneaky-password", role: "ADMIN" } }, credential),
        "FORBIDDEN",
      );
      expectError(await server.graphql(UPDATE_USER, { id, input: { disabled: true } }, credential), "FORBIDDEN");
      expectError(await server.graphql(DELETE_USER, { id }, credential), "FORBIDDEN");
      expectError(await server.graphql(RESET_PASSWORD, { id, password: "taken-over-pw" }, credential), "FORBIDDEN");
    }
    expect(await db.user.count({ where: { username: "sneaky" } })).toBe(0);
    expect(await isSignedIn(admin)).toBe(true);
  });

  it("never deletes, disables or demotes the last enabled ADMIN, even with two ADMINs demoting each other at once", async () => {
    const id = await adminId();
    const lastAdmin = /^admin is the last enabled ADMIN and cannot be .+: make another user ADMIN \(or enable one\) first/;
    expect(expectError(await server.graphql(DELETE_USER, { id }, admin), "CONFLICT").message).toMatch(lastAdmin);
    expect(expectError(await server.graphql(UPDATE_USER, { id, input: { disabled: true } }, admin), "CONFLICT").message).toMatch(lastAdmin);
    expect(expectError(await server.graphql(UPDATE_USER, { id, input: { role: "VIEWER" } }, admin), "CONFLICT").message).toMatch(lastAdmin);

    // A disabled ADMIN does not count.
    const ada = await create("ada", "ADMIN");
    expectData(await server.graphql(UPDATE_USER, { id: ada.id, input: { disabled: true } }, admin));
    expectError(await server.graphql(UPDATE_USER, { id, input: { role: "OPERATOR" } }, admin), "CONFLICT");
    expectData(await server.graphql(UPDATE_USER, { id: ada.id, input: { disabled: false } }, admin));

    const adaSession = await server.login("ada", ada.password);
    const answers = await Promise.all([
      server.graphql(UPDATE_USER, { id: ada.id, input: { role: "VIEWER" } }, admin),
      server.graphql(UPDATE_USER, { id, input: { role: "VIEWER" } }, adaSession),
    ]);
    // The loser is refused CONFLICT, or FORBIDDEN when its request was authenticated after its own demotion.
    expect(answers.filter((a) => a.data?.updateUser)).toHaveLength(1);
    expect(answers.filter((a) => ["CONFLICT", "FORBIDDEN"].includes(a.errors?.[0]?.extensions?.code ?? ""))).toHaveLength(1);
    expect(await db.user.count({ where: { role: "ADMIN", disabledAt: null } })).toBe(1);

    // Put things back: whoever stayed ADMIN restores admin, which then deletes ada.
    const survivor = answers[0].data?.updateUser ? admin : adaSession;
    expectData(await server.graphql(UPDATE_USER, { id, input: { role: "ADMIN" } }, survivor));
    expect(expectData(await server.graphql(ME, {}, admin)).me!.role).toBe("ADMIN");
    expect(expectData(await server.graphql(DELETE_USER, { id: ada.id }, admin)).deleteUser).toBe(true);
  });

  it("disabling a user refuses its sessions and tokens at once; enabling it brings back its API tokens, not its sessions", async () => {
    const dave = await create("dave", "VIEWER");
    const session = await server.login("dave", dave.password);
    const apiToken = await token(session);
    const before = credentialChanges;

    expect(expectData(await server.graphql(UPDATE_USER, { id: dave.id, input: { disabled: true } }, admin)).updateUser.disabled).toBe(true);
    expect(credentialChanges).toBeGreaterThan(before);
    for (const credential of [session, apiToken]) {
      expect(expectError(await server.graphql(ME, {}, credential), "UNAUTHENTICATED").message).toBe(
        "The user dave is disabled; ask an administrator to enable it.",
      );
    }
    expect(
      expectError(
        await server.graphql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", {
          u: "dave",
          p: dave.password,
        }),
        "UNAUTHENTICATED",
      ).message,
    ).toMatch(/disabled/);
    expect(expectData(await server.graphql(USERS, {}, admin)).users.find((u) => u.id === dave.id)?.disabled).toBe(true);

    expectData(await server.graphql(UPDATE_USER, { id: dave.id, input: { disabled: false } }, admin));
    expect(await isSignedIn(apiToken)).toBe(true);
    expect(await isSignedIn(session)).toBe(false);
    expect(await isSignedIn(await server.login("dave", dave.password))).toBe(true);
  });

  it("demoting a user narrows its credentials on the next request and signals the sockets", async () => {
    const dora = await create("dora", "OPERATOR");
    const session = await server.login("dora", dora.password);
    const before = credentialChanges;
    expectData(await server.graphql(UPDATE_USER, { id: dora.id, input: { role: "VIEWER" } }, admin));
    expect(credentialChanges).toBeGreaterThan(before);
    expect(expectData(await server.graphql(ME, {}, session)).me!.role).toBe("VIEWER");
    expectError(await server.graphql("mutation($id: ID!) { runJob(id: $id) { id } }", { id: dora.id }, session), "FORBIDDEN");
  });

  it("deleting a user ends its sessions and tokens and keeps its history", async () => {
    const erin = await create("erin", "OPERATOR");
    const session = await server.login("erin", erin.password);
    const apiToken = await token(session);
    const history = await db.auditEntry.count({ where: { userId: erin.id } });
    const before = credentialChanges;

    expect(expectData(await server.graphql(DELETE_USER, { id: erin.id }, admin)).deleteUser).toBe(true);
    expect(credentialChanges).toBeGreaterThan(before);
    for (const credential of [session, apiToken]) expectError(await server.graphql(ME, {}, credential), "UNAUTHENTICATED");
    expect(expectData(await server.graphql(USERS, {}, admin)).users.map((u) => u.username)).not.toContain("erin");
    expect(await db.apiToken.count({ where: { userId: erin.id } })).toBe(0);
    expect(await db.auditEntry.count({ where: { userId: erin.id } })).toBe(history);
    expect(expectError(await server.graphql(DELETE_USER, { id: erin.id }, admin), "NOT_FOUND").message).toBe(`No user with id ${erin.id}.`);
    expectError(await server.graphql(DELETE_USER, { id: "not-an-id" }, admin), "NOT_FOUND");
  });

  it("an ADMIN's password reset ends every session and token of that user; the new password works, the old one not", async () => {
    const fred = await create("fred", "VIEWER");
    const session = await server.login("fred", fred.password);
    const apiToken = await token(session);
    const before = credentialChanges;

    expectError(await server.graphql(RESET_PASSWORD, { id: fred.id, password: "short" }, admin), "BAD_USER_INPUT", "password");
    expect(expectData(await server.graphql(RESET_PASSWORD, { id: fred.id, password: "fred-brand-new-pw" }, admin)).resetUserPassword).toBe(
      true,
    );
    expect(credentialChanges).toBeGreaterThan(before);
    expect(await isSignedIn(session)).toBe(false);
    expect(await isSignedIn(apiToken)).toBe(false);
    await expect(server.login("fred", fred.password)).rejects.toThrow(/UNAUTHENTICATED/);
    expect(await isSignedIn(await server.login("fred", "fred-brand-new-pw"))).toBe(true);

    const own = expectError(
      await server.graphql(RESET_PASSWORD, { id: await adminId(), password: "another-admin-pw" }, admin),
      "FORBIDDEN",
    );
    expect(own.message).toMatch(/use changePassword/);
    expect(await isSignedIn(await server.login())).toBe(true);
  });

  it("a user's own password change ends their other sessions and keeps this one and their API tokens", async () => {
    const gina = await create("gina", "VIEWER");
    const here = await server.login("gina", gina.password);
    const elsewhere = await server.login("gina", gina.password);
    const apiToken = await token(here);

    const wrong = expectError(
      await server.graphql(CHANGE_PASSWORD, { c: "not-my-password", n: "gina-new-password" }, here),
      "BAD_USER_INPUT",
      "currentPassword",
    );
    expect(wrong.message).toBe("currentPassword: is not your current password");
    expect(
      expectError(await server.graphql(CHANGE_PASSWORD, { c: gina.password, n: "gina-new-password" }, apiToken), "FORBIDDEN").message,
    ).toMatch(/not an API token/);
    expectError(await server.graphql(CHANGE_PASSWORD, { c: gina.password, n: "short" }, here), "BAD_USER_INPUT", "newPassword");
    expectError(await server.graphql(CHANGE_PASSWORD, { c: gina.password, n: "gina" }, here), "BAD_USER_INPUT", "newPassword");
    expectError(await server.graphql(CHANGE_PASSWORD, { c: gina.password, n: gina.password }, here), "BAD_USER_INPUT", "newPassword");

    expect(expectData(await server.graphql(CHANGE_PASSWORD, { c: gina.password, n: "gina-new-password" }, here)).changePassword).toBe(true);
    expect(await isSignedIn(here)).toBe(true);
    expect(await isSignedIn(apiToken)).toBe(true);
    expect(await isSignedIn(elsewhere)).toBe(false);
    await expect(server.login("gina", gina.password)).rejects.toThrow(/UNAUTHENTICATED/);
    const fresh = await server.login("gina", "gina-new-password");
    const sessions = expectData(await server.graphql(SESSIONS, {}, here)).sessions;
    expect(sessions.map((s) => s.current).sort()).toEqual([false, true]);
    expect(await isSignedIn(fresh)).toBe(true);
  });

  it("lists one's own live sessions and revokes them; an ADMIN sees and revokes anyone's", async () => {
    const hank = await create("hank", "VIEWER");
    const first = await server.login("hank", hank.password);
    const second = await server.login("hank", hank.password);
    const sessions = expectData(await server.graphql(SESSIONS, {}, first)).sessions;
    expect(sessions).toHaveLength(2);
    expect(sessions.every((s) => s.createdFrom === "127.0.0.1")).toBe(true);
    const other = sessions.find((s) => !s.current)!;
    const before = credentialChanges;

    expect(expectData(await server.graphql(REVOKE_SESSION, { id: other.id }, first)).revokeSession).toBe(true);
    expect(credentialChanges).toBeGreaterThan(before);
    expect(await isSignedIn(second)).toBe(false);
    expect(expectData(await server.graphql(SESSIONS, {}, first)).sessions.map((s) => s.current)).toEqual([true]);

    const adminSession = expectData(await server.graphql(SESSIONS, {}, admin)).sessions.find((s) => s.current)!;
    expectError(await server.graphql(REVOKE_SESSION, { id: adminSession.id }, first), "NOT_FOUND");
    expectError(await server.graphql(REVOKE_SESSION, { id: "junk" }, first), "NOT_FOUND");

    const hanks = expectData(await server.graphql(SESSIONS, { userId: hank.id }, admin)).sessions;
    expect(hanks).toHaveLength(1);
    expect(hanks[0].current).toBe(false);
    expectData(await server.graphql(REVOKE_SESSION, { id: hanks[0].id }, admin));
    expect(await isSignedIn(first)).toBe(false);
    expect(await isSignedIn(admin)).toBe(true);
  });
});

describe("ADMIN_PASSWORD on a later start", () => {
  let database: TestDatabase | undefined;
  let dataDir: string | undefined;
  let running: RunningCairn | undefined;

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-admin-password-"));
  });
  afterEach(async () => {
    await running?.stop();
    running = undefined;
  });
  afterAll(() =>
    stopAll(
      () => running?.stop(),
      () => database?.drop(),
      () => dataDir && fs.rm(dataDir, { recursive: true, force: true }),
    ),
  );

  /** Starts Cairn on the same database and DATA_DIR each time, as a restart on the machine would. */
  async function start(adminPassword: string) {
    const logs: string[] = [];
    const config = loadConfig({
      PORT: "0",
      DATA_DIR: dataDir!,
      DATABASE_URL: database!.url,
      ADMIN_PASSWORD: adminPassword,
      LAB: "off",
      LOG_LEVEL: "debug",
    });
    const logDestination = new Writable({
      write(chunk, _encoding, callback) {
        logs.push(String(chunk));
        callback();
      },
    });
    running = await startCairn(config, { logDestination });
    const url = running.url;
    const ask = async (query: string, variables: Record<string, unknown> = {}, credential?: string) => {
      const response = await fetch(`${url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      return (await response.json()) as { data?: any; errors?: { message: string; extensions?: { code?: string } }[] };
    };
    const login = async (username: string, password: string) =>
      (await ask("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", { u: username, p: password })).data
        ?.login?.token as string | undefined;
    // The warnings about ADMIN_PASSWORD (a debug line says when it already matches).
    const resetLines = () => logs.filter((line) => line.includes("ADMIN_PASSWORD is set") && JSON.parse(line).level >= 40);
    return { cairn: running, ask, login, logs, resetLines };
  }

  const stop = async () => {
    await running?.stop();
    running = undefined;
  };

  it("resets a lost admin password (signing admin out, keeping its API tokens), and changes nothing when it already matches", async () => {
    let cairn = await start("first-admin-password");
    expect(cairn.cairn.generatedAdminPassword).toBeUndefined();
    const oldSession = (await cairn.login("admin", "first-admin-password"))!;
    const apiToken = (await cairn.ask('mutation { createApiToken(name: "backup-script", role: VIEWER) { token } }', {}, oldSession)).data
      .createApiToken.token as string;
    await stop();

    cairn = await start("second-admin-password");
    const [line] = cairn.resetLines();
    expect(JSON.parse(line)).toMatchObject({ level: 40, username: "admin", changes: ["password reset"] });
    expect(cairn.logs.join("")).not.toMatch(/first-admin-password|second-admin-password/);
    expect(await cairn.login("admin", "first-admin-password")).toBeUndefined();
    const session = await cairn.login("admin", "second-admin-password");
    expect(session).toBeDefined();
    expect((await cairn.ask("{ me { username } }", {}, oldSession)).errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
    expect((await cairn.ask("{ me { username } }", {}, apiToken)).data.me.username).toBe("admin");
    await stop();

    // The same password again: nothing to do, nobody signed out, no warning.
    cairn = await start("second-admin-password");
    expect(cairn.resetLines()).toEqual([]);
    expect((await cairn.ask("{ me { username } }", {}, session)).data.me.username).toBe("admin");
  });

  it("enables and re-promotes a disabled or demoted admin, and recreates a deleted one", async () => {
    let cairn = await start("second-admin-password");
    const admin = (await cairn.login("admin", "second-admin-password"))!;
    const created = await cairn.ask(
      'mutation { createUser(input: { username: "keeper", password: "keeper-password", role: ADMIN }) { id } }',
      {},
      admin,
    );
    expect(created.errors).toBeUndefined();
    const keeper = (await cairn.login("keeper", "keeper-password"))!;
    const adminId = (await cairn.ask("{ me { id } }", {}, admin)).data.me.id as string;
    expect(
      (
        await cairn.ask(
          "mutation($id: ID!) { updateUser(id: $id, input: { disabled: true, role: VIEWER }) { disabled } }",
          { id: adminId },
          keeper,
        )
      ).errors,
    ).toBeUndefined();
    await stop();

    cairn = await start("second-admin-password");
    expect(JSON.parse(cairn.resetLines()[0])).toMatchObject({ changes: ["enabled again", "role VIEWER -> ADMIN"] });
    const again = (await cairn.login("admin", "second-admin-password"))!;
    expect((await cairn.ask("{ me { role disabled } }", {}, again)).data.me).toEqual({ role: "ADMIN", disabled: false });
    const keeperAgain = (await cairn.login("keeper", "keeper-password"))!;
    expect((await cairn.ask("mutation($id: ID!) { deleteUser(id: $id) }", { id: adminId }, keeperAgain)).data?.deleteUser).toBe(true);
    await stop();

    cairn = await start("third-admin-password");
    expect(cairn.resetLines().join("")).toMatch(/there was no user admin: created it/);
    const recreated = (await cairn.login("admin", "third-admin-password"))!;
    expect((await cairn.ask("{ me { role } }", {}, recreated)).data.me.role).toBe("ADMIN");
  });
});
