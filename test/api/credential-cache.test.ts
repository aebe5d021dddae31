/**
 * Issue 14, API throughput: verified credentials are cached per process (no query per request), and the cache stays exact.
 * Two Cairn processes on one database: a credential revoked or narrowed on one, or by hand in the database, is refused by
 * the other on its very next request (the Postgres trigger's NOTIFY, and the event bus's sync before a cached row is used),
 * and a socket streaming on the other is closed at once, not at its periodic check (here an hour away). That the cache is
 * used at all is shown by a change made with triggers off, which the other process does not see until a notified one.
 */
import { createHash, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { buildCairnSchema } from "../../server/graphql/build-schema.js";
import { createHttpServer, type RunningHttpServer } from "../../server/http/http-server.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { graphql } from "../support/graphql.js";
import { stopAll } from "../support/stop-all.js";
import * as queue from "../support/subscription-queue.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { openSocket, type OpenSocket } from "./graphql-ws-client.js";

const HOUR_MS = 3_600_000;
const hashOf = (token: string) => createHash("sha256").update(token).digest("hex");
const ME = graphql("{ me { username role } }");
const CREATE_TOKEN = graphql("mutation($name: String!, $role: Role!) { createApiToken(name: $name, role: $role) { id token } }");
const REVOKE_TOKEN = graphql("mutation($id: ID!) { revokeApiToken(id: $id) }");

describe("credential cache across two processes on one database", () => {
  let first: TestCairn;
  let second: TestCairn;
  let db: Db;
  let admin: string;
  let slowChecks: RunningHttpServer;
  let slowChecksUrl: string;
  const sockets: OpenSocket[] = [];

  beforeAll(async () => {
    first = await startTestCairn();
    second = await startTestCairn({ env: { DATABASE_URL: first.database.url } });
    db = openDatabase(first);
    admin = await first.login();
    // The second process's services behind a front whose periodic socket checks are an hour apart: a close there is the notice's.
    slowChecks = await createHttpServer({
      schema: await buildCairnSchema(),
      services: second.cairn.services,
      log: second.cairn.log,
      maxBodyBytes: 1024 * 1024,
      healthCheck: async () => undefined,
      socketChecks: { intervalMs: HOUR_MS },
    });
    const { port } = await slowChecks.listen(0, "127.0.0.1");
    slowChecksUrl = `ws://127.0.0.1:${port}/graphql`;
  });
  afterAll(() =>
    stopAll(
      () => Promise.all(sockets.map((socket) => socket.dispose())),
      () => slowChecks?.close(),
      () => db?.$disconnect(),
      () => second?.stop(),
      () => first?.stop(),
    ),
  );

  const mint = async (name: string, role: "ADMIN" | "OPERATOR" | "VIEWER" = "ADMIN") =>
    expectData(await first.graphql(CREATE_TOKEN, { name, role }, admin)).createApiToken;
  /** Used twice on the second process: the second answer comes from its cache. */
  const warm = async (token: string) => {
    for (let i = 0; i < 2; i++) expect(expectData(await second.graphql(ME, {}, token)).me?.username).toBeTruthy();
  };

  it("refuses on the very next request a token revoked by the other process", async () => {
    const token = await mint(`cross-${randomUUID()}`);
    await warm(token.token);
    expect(expectData(await first.graphql(REVOKE_TOKEN, { id: token.id }, admin)).revokeApiToken).toBe(true);
    expect(expectError(await second.graphql(ME, {}, token.token), "UNAUTHENTICATED").message).toMatch(/revoked/);
  });

  it("sees changes made by hand in the database on the very next request: expiry, disabling, demotion, deletion", async () => {
    const session = await first.login();
    await warm(session);
    await db.apiToken.update({ where: { tokenHash: hashOf(session) }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect(expectError(await second.graphql(ME, {}, session), "UNAUTHENTICATED").message).toMatch(/expired/);

    const username = `cached-${randomUUID().slice(0, 8)}`;
    const userSession = await createUser(first, username, "ADMIN");
    await warm(userSession);
    await db.user.update({ where: { username }, data: { role: "VIEWER" } });
    expect(expectData(await second.graphql(ME, {}, userSession)).me?.role).toBe("VIEWER");
    await db.user.update({ where: { username }, data: { disabledAt: new Date() } });
    expect(expectError(await second.graphql(ME, {}, userSession), "UNAUTHENTICATED").message).toMatch(/disabled/);
    await db.user.update({ where: { username }, data: { disabledAt: null } });
    expect(expectData(await second.graphql(ME, {}, userSession)).me?.username).toBe(username);
    await db.user.delete({ where: { username } });
    expectError(await second.graphql(ME, {}, userSession), "UNAUTHENTICATED");
  });

  it("serves a known credential from the cache: a change hidden from the trigger is not seen until a notified one", async () => {
    const token = await mint(`cached-${randomUUID()}`);
    await warm(token.token);
    // Triggers off for this transaction only (replica mode): the revocation sends no notification, and is not read back.
    await db.$transaction(async (tx) => {
      await tx.$executeRawUnsafe("SET LOCAL session_replication_role = replica");
      await tx.apiToken.update({ where: { id: token.id }, data: { revokedAt: new Date() } });
    });
    expect(expectData(await second.graphql(ME, {}, token.token)).me?.username).toBe("admin");
    // Any notified change (here a new name) drops the cache of every process.
    await db.apiToken.update({ where: { id: token.id }, data: { name: `${token.id}-renamed` } });
    expect(expectError(await second.graphql(ME, {}, token.token), "UNAUTHENTICATED").message).toMatch(/revoked/);
  });

  it("closes at once a socket streaming on the other process when the token is revoked", async () => {
    const token = await mint(`cross-ws-${randomUUID()}`);
    const socket = openSocket(slowChecksUrl, `Bearer ${token.token}`);
    sockets.push(socket);
    const job = await db.job.create({
      data: { name: `job-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    const run = await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "PENDING" } });
    const updates = queue.subscribe<{ id: string }>(socket.client, "subscription($j: ID) { runUpdated(jobId: $j) { id } }", { j: job.id });
    expect(
      (await queue.untilActive(updates, () => second.cairn.services.events.publish({ type: "run", runId: run.id, jobId: job.id }))).id,
    ).toBe(run.id);
    expect(expectData(await first.graphql(REVOKE_TOKEN, { id: token.id }, admin)).revokeApiToken).toBe(true);
    const closed = await socket.closed;
    expect(closed.code).toBe(4401);
    expect(closed.reason).toMatch(/revoked/);
  });
});
