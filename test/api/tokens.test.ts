/**
 * Finding 4 of issue 10: a VIEWER API token listed its owner's ADMIN tokens and revoked them, and a token could mint tokens
 * that outlived its own revocation. Now a principal sees and manages only credentials at or below its own role, API tokens
 * cannot create API tokens, and each credential records where it was made and (to the minute) when it was last used.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { graphql } from "../support/graphql.js";
import { stopAll } from "../support/stop-all.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";

const ME = graphql("{ me { id username role } }");
const CREATE_TOKEN = graphql("mutation($name: String!, $role: Role!) { createApiToken(name: $name, role: $role) { id name role token } }");
const REVOKE_TOKEN = graphql("mutation($id: ID!) { revokeApiToken(id: $id) }");
const TOKENS = graphql(
  "query($userId: ID) { apiTokens(userId: $userId) { id name role owner { id username } createdFrom lastUsedAt revokedAt } }",
);
const SESSIONS = graphql("query($userId: ID) { sessions(userId: $userId) { id current createdFrom createdAt expiresAt lastUsedAt } }");
const REVOKE_SESSION = graphql("mutation($id: ID!) { revokeSession(id: $id) }");

/** A login sent from a chosen loopback address, so that `createdFrom` is not simply 127.0.0.1. */
function loginFrom(server: TestCairn, localAddress: string, username: string, password: string): Promise<string> {
  const url = new URL(`${server.url}/graphql`);
  const body = JSON.stringify({
    query: "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
    variables: { u: username, p: password },
  });
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        localAddress,
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const answer = JSON.parse(Buffer.concat(chunks).toString("utf8"));
          if (answer.data?.login?.token) resolve(answer.data.login.token);
          else reject(new Error(`login failed: ${JSON.stringify(answer)}`));
        });
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

describe("API tokens and sessions, scoped by role", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let vera: string;

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    admin = await server.login();
    vera = await createUser(server, "vera-viewer", "VIEWER");
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  const mint = async (session: string, name: string, role: "ADMIN" | "OPERATOR" | "VIEWER") =>
    expectData(await server.graphql(CREATE_TOKEN, { name, role }, session)).createApiToken;

  it("does not let a VIEWER token of an ADMIN list or revoke its owner's ADMIN and OPERATOR tokens, nor its sessions", async () => {
    const adminToken = await mint(admin, "full-power", "ADMIN");
    const operatorToken = await mint(admin, "runs-jobs", "OPERATOR");
    const viewerToken = await mint(admin, "dashboards", "VIEWER");

    const seen = expectData(await server.graphql(TOKENS, {}, viewerToken.token)).apiTokens;
    expect(seen.map((t) => t.id)).toContain(viewerToken.id);
    expect(seen.map((t) => t.id)).not.toContain(adminToken.id);
    expect(seen.map((t) => t.id)).not.toContain(operatorToken.id);
    expect(seen.every((t) => t.role === "VIEWER" && t.owner.username === "admin")).toBe(true);

    for (const target of [adminToken, operatorToken]) {
      expectError(await server.graphql(REVOKE_TOKEN, { id: target.id }, viewerToken.token), "NOT_FOUND");
      expect(expectData(await server.graphql(ME, {}, target.token)).me!.username).toBe("admin");
    }
    // The admin's sessions are ADMIN credentials: invisible and out of reach for its VIEWER token.
    expect(expectData(await server.graphql(SESSIONS, {}, viewerToken.token)).sessions).toEqual([]);
    const adminSessionId = (await db.apiToken.findFirstOrThrow({ where: { kind: "SESSION", user: { username: "admin" } } })).id;
    expectError(await server.graphql(REVOKE_SESSION, { id: adminSessionId }, viewerToken.token), "NOT_FOUND");
    expectData(await server.graphql(ME, {}, admin));

    // An OPERATOR token of the same owner reaches the VIEWER and OPERATOR ones, not the ADMIN one.
    const fromOperator = expectData(await server.graphql(TOKENS, {}, operatorToken.token)).apiTokens.map((t) => t.id);
    expect(fromOperator).toEqual(expect.arrayContaining([viewerToken.id, operatorToken.id]));
    expect(fromOperator).not.toContain(adminToken.id);
    expect(expectData(await server.graphql(REVOKE_TOKEN, { id: viewerToken.id }, operatorToken.token)).revokeApiToken).toBe(true);
    expectError(await server.graphql(ME, {}, viewerToken.token), "UNAUTHENTICATED");
  });

  it("refuses to create an API token with an API token (FORBIDDEN, saying why), whatever its role", async () => {
    const adminToken = await mint(admin, "automation", "ADMIN");
    const before = await db.apiToken.count({ where: { kind: "API" } });
    for (const role of ["ADMIN", "VIEWER"] as const) {
      const error = expectError(await server.graphql(CREATE_TOKEN, { name: "child", role }, adminToken.token), "FORBIDDEN");
      expect(error.message).toMatch(/API tokens cannot create API tokens: sign in with your password/);
    }
    expect(await db.apiToken.count({ where: { kind: "API" } })).toBe(before);
    // Revoking the parent leaves nothing behind it that still works.
    expectData(await server.graphql(REVOKE_TOKEN, { id: adminToken.id }, admin));
    expectError(await server.graphql(ME, {}, adminToken.token), "UNAUTHENTICATED");
  });

  it("lists everyone's tokens with their owner for an ADMIN, one user's on request, and only one's own for others", async () => {
    const veraToken = await mint(vera, "vera-script", "VIEWER");
    const veraId = expectData(await server.graphql(ME, {}, vera)).me!.id;
    const adminId = expectData(await server.graphql(ME, {}, admin)).me!.id;

    const all = expectData(await server.graphql(TOKENS, {}, admin)).apiTokens;
    expect(all.find((t) => t.id === veraToken.id)?.owner).toEqual({ id: veraId, username: "vera-viewer" });
    expect(new Set(all.map((t) => t.owner.username))).toEqual(new Set(["admin", "vera-viewer"]));

    const veras = expectData(await server.graphql(TOKENS, { userId: veraId }, admin)).apiTokens;
    expect(veras.map((t) => t.id)).toEqual([veraToken.id]);

    expect(expectData(await server.graphql(TOKENS, {}, vera)).apiTokens.map((t) => t.id)).toEqual([veraToken.id]);
    expect(expectError(await server.graphql(TOKENS, { userId: adminId }, vera), "FORBIDDEN").message).toMatch(/Only an ADMIN/);
    expectError(await server.graphql(SESSIONS, { userId: adminId }, vera), "FORBIDDEN");
    expect(expectData(await server.graphql(SESSIONS, { userId: veraId }, admin)).sessions.length).toBeGreaterThanOrEqual(1);
  });

  it("records the client address a session and a token were created from", async () => {
    const session = await loginFrom(server, "127.0.0.9", "vera-viewer", "vera-viewer-password");
    const sessions = expectData(await server.graphql(SESSIONS, {}, session)).sessions;
    const current = sessions.find((s) => s.current)!;
    expect(current.createdFrom).toBe("127.0.0.9");
    expect(sessions.filter((s) => s.current)).toHaveLength(1);
    expect(new Date(current.expiresAt).getTime()).toBeGreaterThan(new Date(current.createdAt).getTime());

    // A token records where createApiToken was called from (here 127.0.0.1), whatever address its session signed in from.
    const token = await mint(session, "from-one", "VIEWER");
    expect((await db.apiToken.findUniqueOrThrow({ where: { id: token.id } })).createdFrom).toBe("127.0.0.1");
    const listed = expectData(await server.graphql(TOKENS, {}, vera)).apiTokens;
    expect(listed.find((t) => t.id === token.id)?.createdFrom).toBe("127.0.0.1");
  });

  it("writes lastUsedAt at most once a minute per credential, not on every request", async () => {
    const token = await mint(admin, "busy-script", "VIEWER");
    expect((await db.apiToken.findUniqueOrThrow({ where: { id: token.id } })).lastUsedAt).toBeNull();
    expectData(await server.graphql(ME, {}, token.token));
    const first = (await db.apiToken.findUniqueOrThrow({ where: { id: token.id } })).lastUsedAt;
    expect(first).not.toBeNull();
    for (let i = 0; i < 10; i++) expectData(await server.graphql(ME, {}, token.token));
    expect((await db.apiToken.findUniqueOrThrow({ where: { id: token.id } })).lastUsedAt).toEqual(first);

    // A minute later (moved back in the database rather than waited for), the next use writes it again.
    const longAgo = new Date(first!.getTime() - 2 * 60_000);
    await db.apiToken.update({ where: { id: token.id }, data: { lastUsedAt: longAgo } });
    expectData(await server.graphql(ME, {}, token.token));
    const second = (await db.apiToken.findUniqueOrThrow({ where: { id: token.id } })).lastUsedAt!;
    expect(second.getTime()).toBeGreaterThan(longAgo.getTime());
    const listed = expectData(await server.graphql(TOKENS, {}, admin)).apiTokens.find((t) => t.id === token.id)!;
    expect(new Date(listed.lastUsedAt!).getTime()).toBe(second.getTime());
  });
});
