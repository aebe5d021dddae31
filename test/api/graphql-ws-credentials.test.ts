/**
 * A graphql-ws connection is only as good as its credential right now: after revokeApiToken, logout or a session's expiry,
 * the socket opened before (a) answers UNAUTHENTICATED to any new operation and (b) is closed with 4401 while a subscription
 * streams: at once for a change made in this process, within the periodic check for an expiry or a change made by another
 * process on the same database.
 *
 * (a) runs against a second HTTP front on the same services whose socket checks are an hour apart, so that it is the
 * per-operation check that answers, not a close that happened first. (b) runs against the server as app.ts composes it.
 */
import { createHash, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { buildCairnSchema } from "../../server/graphql/build-schema.js";
import { createHttpServer, type RunningHttpServer } from "../../server/http/http-server.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import * as queue from "../support/subscription-queue.js";
import { expectData, openDatabase } from "./api-assertions.js";
import { openSocket, runOverSocket, type OpenSocket } from "./graphql-ws-client.js";

const HOUR_MS = 3_600_000;
const hashOf = (token: string) => createHash("sha256").update(token).digest("hex");

describe("graphql-ws: credentials checked on every operation, dead ones closed", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let stale: RunningHttpServer;
  let liveUrl: string;
  let staleUrl: string;
  const sockets: OpenSocket[] = [];

  const open = (url: string, token: string) => {
    const socket = openSocket(url, `Bearer ${token}`);
    sockets.push(socket);
    return socket;
  };
  const createApiToken = async (name: string) =>
    expectData(
      await server.graphql<{ createApiToken: { id: string; token: string } }>(
        "mutation($name: String!) { createApiToken(name: $name, role: ADMIN) { id token } }",
        { name },
        admin,
      ),
    ).createApiToken;
  const revokeApiToken = async (id: string) =>
    expect(expectData(await server.graphql("mutation($id: ID!) { revokeApiToken(id: $id) }", { id }, admin)).revokeApiToken).toBe(true);
  const logout = async (token: string) => expect(expectData(await server.graphql("mutation { logout }", {}, token)).logout).toBe(true);
  const expire = (token: string) =>
    db.apiToken.update({ where: { tokenHash: hashOf(token) }, data: { expiresAt: new Date(Date.now() - 1000) } });

  /** A subscription that has delivered its first event (so it is live on the server), and the socket it runs on. */
  async function streaming(url: string, token: string) {
    const socket = open(url, token);
    const job = await db.job.create({
      data: { name: `job-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    const run = await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "PENDING" } });
    const updates = queue.subscribe<{ id: string }>(socket.client, "subscription($j: ID) { runUpdated(jobId: $j) { id } }", { j: job.id });
    const first = await queue.untilActive(updates, () =>
      server.cairn.services.events.publish({ type: "run", runId: run.id, jobId: job.id }),
    );
    expect(first.id).toBe(run.id);
    return { socket, updates, jobId: job.id };
  }

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    admin = await server.login();
    stale = await createHttpServer({
      schema: await buildCairnSchema(),
      services: server.cairn.services,
      log: server.cairn.log,
      maxBodyBytes: 1024 * 1024,
      healthCheck: async () => undefined,
      socketChecks: { intervalMs: HOUR_MS, debounceMs: HOUR_MS },
    });
    const { port } = await stale.listen(0, "127.0.0.1");
    staleUrl = `ws://127.0.0.1:${port}/graphql`;
    liveUrl = `${server.url.replace(/^http/, "ws")}/graphql`;
  });
  afterAll(() =>
    stopAll(
      () => Promise.all(sockets.map((socket) => socket.dispose())),
      () => stale?.close(),
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  describe("(a) a new operation on a socket opened before the credential died answers UNAUTHENTICATED", () => {
    /** Opens a socket, proves it works, kills the credential, and returns what the same socket answers next. */
    async function afterDeath(token: string, kill: () => Promise<unknown>, query = "{ me { username } }", variables = {}) {
      const socket = open(staleUrl, token);
      await socket.connected;
      expect((await runOverSocket(socket.client, "{ me { username } }")).data).toEqual({ me: { username: "admin" } });
      await kill();
      const answer = await runOverSocket(socket.client, query, variables);
      expect(socket.connections()).toBe(1);
      expect(answer.data ?? null).toBeNull();
      expect(answer.errors).toHaveLength(1);
      expect(answer.errors![0].extensions?.code).toBe("UNAUTHENTICATED");
      return answer.errors![0];
    }

    it("after revokeApiToken", async () => {
      const created = await createApiToken(`ws-revoked-${randomUUID()}`);
      const error = await afterDeath(created.token, () => revokeApiToken(created.id));
      expect(error.message).toMatch(/revoked/);
    });

    it("after logout", async () => {
      const session = await server.login();
      const error = await afterDeath(session, () => logout(session));
      expect(error.message).toMatch(/revoked/);
    });

    it("after the session expired; and an expired session cannot mint an API token over the socket", async () => {
      const session = await server.login();
      const name = `minted-after-expiry-${randomUUID()}`;
      const error = await afterDeath(
        session,
        () => expire(session),
        "mutation($n: String!) { createApiToken(name: $n, role: ADMIN) { token } }",
        {
          n: name,
        },
      );
      expect(error.message).toMatch(/expired/);
      expect(await db.apiToken.count({ where: { name } })).toBe(0);
    });

    it("leaves the user's other credentials working on their own sockets", async () => {
      const session = await server.login();
      const other = open(staleUrl, admin);
      await afterDeath(session, () => logout(session));
      expect((await runOverSocket(other.client, "{ me { username } }")).data).toEqual({ me: { username: "admin" } });
    });
  });

  describe("(b) a streaming subscription's socket is closed with 4401", () => {
    /** Waits for the close and checks the subscription ended with it. */
    async function expectClosed(stream: Awaited<ReturnType<typeof streaming>>, why: RegExp) {
      const closed = await stream.socket.closed;
      expect(closed.code).toBe(4401);
      expect(closed.reason).toMatch(/^Unauthenticated: /);
      expect(closed.reason).toMatch(why);
      // Warm-up events may still be queued before the end: the subscription ends with the socket, whatever was queued.
      const ended = async () => {
        for (;;) await stream.updates.next();
      };
      await expect(ended()).rejects.toBeDefined();
    }

    it("at once after revokeApiToken", async () => {
      const created = await createApiToken(`ws-streaming-${randomUUID()}`);
      const stream = await streaming(liveUrl, created.token);
      await revokeApiToken(created.id);
      await expectClosed(stream, /revoked/);
    });

    it("at once after logout, and the admin's other socket stays open", async () => {
      const session = await server.login();
      const kept = await streaming(liveUrl, admin);
      const stream = await streaming(liveUrl, session);
      await logout(session);
      await expectClosed(stream, /revoked/);
      expect((await runOverSocket(kept.socket.client, "{ me { username } }")).data).toEqual({ me: { username: "admin" } });
      expect(kept.socket.connections()).toBe(1);
    });

    it("within the periodic check after the session expired", async () => {
      const session = await server.login();
      const stream = await streaming(liveUrl, session);
      await expire(session);
      await expectClosed(stream, /expired/);
    });

    it("not when the role goes down but every subscription is still allowed: new operations get the lower role at once", async () => {
      const username = `demoted-${randomUUID().slice(0, 8)}`;
      const token = await createUser(server, username, "ADMIN");
      const stream = await streaming(liveUrl, token);
      await db.user.update({ where: { username }, data: { role: "VIEWER" } });
      const refused = await runOverSocket(stream.socket.client, 'mutation { createApiToken(name: "above", role: ADMIN) { id } }');
      expect(refused.errors?.[0].extensions?.code).toBe("FORBIDDEN");
      expect((await runOverSocket(stream.socket.client, "{ me { role } }")).data).toEqual({ me: { role: "VIEWER" } });
      // The operation above made the guard re-check the socket's subscriptions: runUpdated is VIEWER's, so it keeps streaming
      // (a run made now, after the warm-up events still queued).
      const marker = await db.run.create({ data: { jobId: stream.jobId, trigger: "MANUAL", status: "PENDING" } });
      await server.cairn.services.events.publish({ type: "run", runId: marker.id, jobId: stream.jobId });
      let seen = await stream.updates.next();
      while (seen.id !== marker.id) seen = await stream.updates.next();
      expect(stream.socket.connections()).toBe(1);
    });

    it("within the periodic check after another process revoked the token (no event in this process)", async () => {
      const created = await createApiToken(`ws-other-process-${randomUUID()}`);
      const stream = await streaming(liveUrl, created.token);
      await db.apiToken.update({ where: { id: created.id }, data: { revokedAt: new Date() } });
      await expectClosed(stream, /revoked/);
    });
  });
});
