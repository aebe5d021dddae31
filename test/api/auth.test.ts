import { createHash, randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { stopAll } from "../support/stop-all.js";
import { graphql, querySource } from "../support/graphql.js";

const ME = graphql("{ me { username role } }");
const LOGIN = graphql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token user { id username role } } }");
const CREATE_TOKEN = graphql("mutation($name: String!, $role: Role!) { createApiToken(name: $name, role: $role) { id name role token } }");
const REVOKE_TOKEN = graphql("mutation($id: ID!) { revokeApiToken(id: $id) }");

/** One call of each kind of mutation, with well-typed arguments so that only the role decides the answer. */
const MUTATIONS: Record<string, { query: string; variables: Record<string, unknown> }> = {
  createRemote: {
    query: "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }",
    variables: { input: { name: "forbidden-remote", kind: "LOCAL", location: "/tmp" } },
  },
  createJob: {
    query: "mutation($input: JobInput!) { createJob(input: $input) { id } }",
    variables: {
      input: {
        name: "forbidden-job",
        mode: "ROLLING_SNAPSHOT",
        selection: { smart: {} },
        schedules: [{ cron: "0 2 * * *", snapshotRetention: 1 }],
      },
    },
  },
  connectPool: {
    query: "mutation($input: PoolInput!) { connectPool(input: $input) { id } }",
    variables: { input: { name: "forbidden-pool", url: "http://127.0.0.1:1", username: "root", password: "secret" } },
  },
  runJob: { query: "mutation($id: ID!) { runJob(id: $id) { id } }", variables: { id: randomUUID() } },
  cancelRun: { query: "mutation($id: ID!) { cancelRun(id: $id) { id } }", variables: { id: randomUUID() } },
  removeJob: { query: "mutation($id: ID!) { removeJob(id: $id) }", variables: { id: randomUUID() } },
};

const READS = graphql(
  "{ pools { id name } remotes { id name } jobs { id } runs(first: 5) { totalCount } restorePoints(first: 5) { totalCount } }",
);

describe("authentication and roles", () => {
  let server: TestCairn;
  let db: Db;
  let viewer: string;
  let operator: string;

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    viewer = await createUser(server, "vera-viewer", "VIEWER");
    operator = await createUser(server, "otto-operator", "OPERATOR");
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  async function rawPost(headers: Record<string, string>, query = querySource(ME)) {
    const response = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ query }),
    });
    return {
      status: response.status,
      body: (await response.json()) as { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] },
    };
  }

  describe("signing in", () => {
    it("gives a token that works for `me` to a user with the right password", async () => {
      const result = await server.graphql(LOGIN, { u: "admin", p: ADMIN_PASSWORD });
      const { login } = expectData(result);
      expect(login.user).toMatchObject({ username: "admin", role: "ADMIN" });
      expect(login.token).toMatch(/^cairn_/);
      expect(expectData(await server.graphql(ME, {}, login.token)).me).toEqual({ username: "admin", role: "ADMIN" });
    });

    it("refuses a wrong password and an unknown user alike, with UNAUTHENTICATED and the same message", async () => {
      const wrongPassword = expectError(await server.graphql(LOGIN, { u: "admin", p: "not-the-password" }), "UNAUTHENTICATED");
      const unknownUser = expectError(await server.graphql(LOGIN, { u: "nobody-here", p: ADMIN_PASSWORD }), "UNAUTHENTICATED");
      expect(wrongPassword.message).toBe(unknownUser.message);
      expect(wrongPassword.message).not.toMatch(/nobody-here|admin/);
    });

    it("answers `me` with null without a token", async () => {
      expect(expectData(await server.graphql(ME)).me).toBeNull();
    });
  });

  describe("bearer tokens", () => {
    it("refuses a protected query without a token with UNAUTHENTICATED", async () => {
      const error = expectError(await server.graphql("{ pools { id } }"), "UNAUTHENTICATED");
      expect(error.message).toMatch(/Sign in/);
    });

    it("refuses a malformed Authorization header with HTTP 401 and UNAUTHENTICATED saying what is expected", async () => {
      for (const authorization of ["Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer not-a-cairn-token", "Bearer cairn_short"]) {
        const { status, body } = await rawPost({ authorization });
        expect(status, authorization).toBe(401);
        expect(body.errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
        expect(body.errors?.[0].message).toMatch(/Bearer <token>/);
        expect(body.data ?? null).toBeNull();
      }
    });

    it("refuses a well-formed but unknown token with HTTP 401 and UNAUTHENTICATED", async () => {
      const { status, body } = await rawPost({ authorization: `Bearer cairn_${randomBytes(32).toString("base64url")}` });
      expect(status).toBe(401);
      expect(body.errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
      expect(body.errors?.[0].message).toMatch(/not valid/);
    });

    it("refuses a session token after logout", async () => {
      const token = await server.login();
      expect(expectData(await server.graphql(graphql("mutation { logout }"), {}, token)).logout).toBe(true);
      const error = expectError(await server.graphql(ME, {}, token), "UNAUTHENTICATED");
      expect(error.message).toMatch(/revoked/);
    });

    it("refuses an expired session", async () => {
      const token = await server.login();
      const tokenHash = createHash("sha256").update(token).digest("hex");
      await db.apiToken.update({ where: { tokenHash }, data: { expiresAt: new Date(Date.now() - 1000) } });
      const error = expectError(await server.graphql(ME, {}, token), "UNAUTHENTICATED");
      expect(error.message).toMatch(/expired/);
    });

    it("refuses an API token once it is revoked, and leaves the other tokens working", async () => {
      const admin = await server.login();
      const kept = expectData(await server.graphql(CREATE_TOKEN, { name: "kept", role: "VIEWER" }, admin)).createApiToken;
      const revoked = expectData(await server.graphql(CREATE_TOKEN, { name: "to-revoke", role: "VIEWER" }, admin)).createApiToken;
      expect(expectData(await server.graphql(ME, {}, revoked.token)).me!.username).toBe("admin");
      expect(expectData(await server.graphql(REVOKE_TOKEN, { id: revoked.id }, admin)).revokeApiToken).toBe(true);
      expect(expectError(await server.graphql(ME, {}, revoked.token), "UNAUTHENTICATED").message).toMatch(/revoked/);
      expect(expectData(await server.graphql(ME, {}, kept.token)).me!.username).toBe("admin");
      const listed = expectData(await server.graphql(graphql("{ apiTokens { id revokedAt } }"), {}, admin)).apiTokens;
      expect(listed.find((t) => t.id === revoked.id)!.revokedAt).not.toBeNull();
      expect(listed.find((t) => t.id === kept.id)!.revokedAt).toBeNull();
    });

    it("does not let a user revoke another user's API token (NOT_FOUND)", async () => {
      const admin = await server.login();
      const adminToken = expectData(await server.graphql(CREATE_TOKEN, { name: "admin-only", role: "VIEWER" }, admin)).createApiToken;
      expectError(await server.graphql(REVOKE_TOKEN, { id: adminToken.id }, viewer), "NOT_FOUND");
      expect(expectData(await server.graphql(ME, {}, adminToken.token)).me!.username).toBe("admin");
    });
  });

  describe("roles", () => {
    it.each(["createRemote", "createJob", "connectPool", "runJob", "cancelRun", "removeJob"])(
      "refuses %s to a VIEWER with FORBIDDEN",
      async (name) => {
        const { query, variables } = MUTATIONS[name];
        const error = expectError(await server.graphql(query, variables, viewer), "FORBIDDEN");
        expect(error.message).toMatch(/needs the (ADMIN|OPERATOR) role; you are VIEWER/);
      },
    );

    it.each(["removeJob", "createJob", "connectPool", "createRemote"])("refuses %s to an OPERATOR with FORBIDDEN", async (name) => {
      const { query, variables } = MUTATIONS[name];
      const error = expectError(await server.graphql(query, variables, operator), "FORBIDDEN");
      expect(error.message).toMatch(/needs the ADMIN role; you are OPERATOR/);
    });

    it("saves nothing when a mutation is refused for its role", async () => {
      for (const token of [viewer, operator]) {
        await server.graphql(MUTATIONS.createRemote.query, MUTATIONS.createRemote.variables, token);
        await server.graphql(MUTATIONS.createJob.query, MUTATIONS.createJob.variables, token);
      }
      expect(await db.remote.count({ where: { name: "forbidden-remote" } })).toBe(0);
      expect(await db.job.count({ where: { name: "forbidden-job" } })).toBe(0);
      expect(await db.pool.count({ where: { name: "forbidden-pool" } })).toBe(0);
    });

    it("lets an OPERATOR get past the role check of runJob and cancelRun (the answer is about the id, not the role)", async () => {
      expectError(await server.graphql(MUTATIONS.runJob.query, MUTATIONS.runJob.variables, operator), "NOT_FOUND");
      expectError(await server.graphql(MUTATIONS.cancelRun.query, MUTATIONS.cancelRun.variables, operator), "NOT_FOUND");
    });

    it("lets a VIEWER and an OPERATOR read pools, remotes, jobs, runs and restore points", async () => {
      for (const token of [viewer, operator]) {
        const data = expectData(await server.graphql(READS, {}, token));
        expect(data.remotes).toEqual([]);
        expect(data.runs.totalCount).toBe(0);
      }
    });
  });

  describe("API tokens", () => {
    it("shows the secret once, and stores only its SHA-256", async () => {
      const admin = await server.login();
      const created = expectData(await server.graphql(CREATE_TOKEN, { name: "ci-script", role: "OPERATOR" }, admin)).createApiToken;
      expect(created).toMatchObject({ name: "ci-script", role: "OPERATOR" });
      expect(created.token).toMatch(/^cairn_[A-Za-z0-9_-]{40,}$/);

      const listed = expectData(await server.graphql(graphql("{ apiTokens { id name role createdAt revokedAt } }"), {}, admin)).apiTokens;
      expect(listed.find((t: any) => t.id === created.id)).toMatchObject({ name: "ci-script", role: "OPERATOR", revokedAt: null });
      expect(JSON.stringify(listed)).not.toContain(created.token);
      expectError(await server.graphql("{ apiTokens { token } }", {}, admin), "GRAPHQL_VALIDATION_FAILED");

      const row = await db.apiToken.findUniqueOrThrow({ where: { id: created.id } });
      expect(row.tokenHash).toBe(createHash("sha256").update(created.token).digest("hex"));
      expect(row.kind).toBe("API");
      expect(row.expiresAt).toBeNull();
      expect(JSON.stringify(row)).not.toContain(created.token);
      expect(JSON.stringify(row)).not.toContain(created.token.slice("cairn_".length));
    });

    it("refuses a token with a role above its owner's with FORBIDDEN, and saves none", async () => {
      const before = await db.apiToken.count({ where: { kind: "API" } });
      expectError(await server.graphql(CREATE_TOKEN, { name: "escalate", role: "ADMIN" }, viewer), "FORBIDDEN");
      expectError(await server.graphql(CREATE_TOKEN, { name: "escalate", role: "OPERATOR" }, viewer), "FORBIDDEN");
      expectError(await server.graphql(CREATE_TOKEN, { name: "escalate", role: "ADMIN" }, operator), "FORBIDDEN");
      expect(await db.apiToken.count({ where: { kind: "API" } })).toBe(before);
    });

    it("refuses a token without a name with BAD_USER_INPUT on `name`", async () => {
      expectError(await server.graphql(CREATE_TOKEN, { name: "  ", role: "VIEWER" }, viewer), "BAD_USER_INPUT", "name");
    });

    it("caps what a token may do at its own role, even when its owner is an admin", async () => {
      const admin = await server.login();
      const token = expectData(await server.graphql(CREATE_TOKEN, { name: "read-only", role: "VIEWER" }, admin)).createApiToken.token;
      expect(expectData(await server.graphql(ME, {}, token)).me).toEqual({ username: "admin", role: "VIEWER" });
      expectData(await server.graphql(READS, {}, token));
      expectError(await server.graphql(MUTATIONS.createRemote.query, MUTATIONS.createRemote.variables, token), "FORBIDDEN");
      expectError(await server.graphql(MUTATIONS.runJob.query, MUTATIONS.runJob.variables, token), "FORBIDDEN");
    });

    it("caps a token at its owner's current role when the owner is demoted", async () => {
      const token = await createUser(server, "dora-demoted", "OPERATOR");
      const apiToken = expectData(await server.graphql(CREATE_TOKEN, { name: "ops", role: "OPERATOR" }, token)).createApiToken.token;
      expectError(await server.graphql(MUTATIONS.runJob.query, MUTATIONS.runJob.variables, apiToken), "NOT_FOUND");
      await db.user.update({ where: { username: "dora-demoted" }, data: { role: "VIEWER" } });
      expect(expectData(await server.graphql(ME, {}, apiToken)).me!.role).toBe("VIEWER");
      expectError(await server.graphql(MUTATIONS.runJob.query, MUTATIONS.runJob.variables, apiToken), "FORBIDDEN");
    });
  });
});
