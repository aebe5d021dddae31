/**
 * The audit log against a real server: every mutation (HTTP and graphql-ws, refused or not, sign-ins included) leaves one entry
 * saying who, what, on which object, from where and how it ended, with no secret in it; `auditLog` is ADMIN only, filters and
 * pages; the retention sweep deletes old entries only (driven by the time given to it, never by waiting).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { getNamedType, type GraphQLInputType, isEnumType, isInputObjectType, isListType, isNonNullType, isLeafType } from "graphql";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { loadConfig } from "../../server/config.js";
import { buildCairnSchema } from "../../server/graphql/build-schema.js";
import { createLogger } from "../../server/log.js";
import { hashToken } from "../../server/security/tokens.js";
import { AuditService } from "../../server/services/audit-service.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { manualClock } from "../support/manual-clock.js";
import { stopAll } from "../support/stop-all.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";

const DAY = 86_400_000;
const AUDIT_LOG = `query($filter: AuditLogFilter, $first: Int, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id action } }
    nodes { id at userId username tokenId tokenKind tokenName clientAddress transport action objectType objectId objectName success errorCode message arguments }
  }
}`;

describe("audit log", () => {
  let server: TestCairn;
  let db: Db;
  let admin: string;
  let adminId: string;
  let viewer: string;
  let operator: string;
  let wsUrl: string;
  const clients: Client[] = [];

  /** The newest entry of an action (the tests run one after another: the last one is the one just made). */
  const latest = async (action: string) => {
    const row = await db.auditEntry.findFirst({ where: { action }, orderBy: [{ at: "desc" }, { id: "desc" }] });
    expect(row, `an audit entry for ${action}`).not.toBeNull();
    return row!;
  };
  const sessionIdOf = async (token: string) => (await db.apiToken.findUniqueOrThrow({ where: { tokenHash: hashToken(token) } })).id;
  /** Every row of the table as one text, to look for a secret anywhere in it. */
  const wholeTable = async () => JSON.stringify(await db.$queryRawUnsafe(`SELECT * FROM "AuditEntry"`));

  /** Runs one operation over graphql-ws and answers its single result. */
  const overSocket = (client: Client, query: string, variables: Record<string, unknown> = {}) =>
    new Promise<{ data?: any; errors?: { message: string; extensions?: { code?: string } }[] }>((resolve, reject) => {
      let result: any;
      client.subscribe({ query, variables }, { next: (value) => (result = value), error: reject, complete: () => resolve(result) });
    });

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    admin = await server.login();
    adminId = (await db.user.findUniqueOrThrow({ where: { username: "admin" } })).id;
    viewer = await createUser(server, "audit-viewer", "VIEWER");
    operator = await createUser(server, "audit-operator", "OPERATOR");
    wsUrl = `${server.url.replace(/^http/, "ws")}/graphql`;
  });
  afterAll(() =>
    stopAll(
      () => Promise.all(clients.map((client) => client.dispose())),
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  it("records a mutation over HTTP: user, session, action, object, address, transport, success", async () => {
    const created = expectData(
      await server.graphql<any>(`mutation { createApiToken(name: "audit over http", role: VIEWER) { id name token } }`, {}, admin),
    ).createApiToken;
    const entry = await latest("createApiToken");
    expect(entry).toMatchObject({
      userId: adminId,
      username: "admin",
      tokenId: await sessionIdOf(admin),
      tokenKind: "SESSION",
      tokenName: null,
      transport: "HTTP",
      action: "createApiToken",
      objectType: "ApiToken",
      objectId: created.id,
      objectName: "audit over http",
      success: true,
      errorCode: null,
      message: null,
      arguments: { name: "audit over http", role: "VIEWER" },
    });
    expect(entry.clientAddress).toMatch(/127\.0\.0\.1$/);
    expect(Date.now() - entry.at.getTime()).toBeLessThan(10 * 60_000);
    // The token minted is in the answer only.
    expect(await wholeTable()).not.toContain(created.token);
  });

  it("records a mutation over graphql-ws with an API token: its kind and name, the object's name read before it was removed", async () => {
    const minted = expectData(
      await server.graphql<any>(`mutation { createApiToken(name: "audit socket token", role: ADMIN) { id token } }`, {}, admin),
    ).createApiToken;
    const job = await db.job.create({
      data: { name: `audited job ${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    const client = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${minted.token}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const result = await overSocket(client, "mutation($id: ID!) { removeJob(id: $id) }", { id: job.id });
    expect(result.errors).toBeUndefined();
    expect(result.data).toEqual({ removeJob: true });

    const entry = await latest("removeJob");
    expect(entry).toMatchObject({
      userId: adminId,
      username: "admin",
      tokenId: minted.id,
      tokenKind: "API",
      tokenName: "audit socket token",
      transport: "WS",
      action: "removeJob",
      objectType: "Job",
      objectId: job.id,
      objectName: job.name,
      success: true,
      arguments: { id: job.id },
    });
    expect(entry.clientAddress).toMatch(/127\.0\.0\.1$/);
  });

  it("records a mutation refused for bad input as a failure with BAD_USER_INPUT and the client's message", async () => {
    const name = `   `;
    const result = await server.graphql<any>(
      "mutation($input: JobInput!) { createJob(input: $input) { id } }",
      { input: { name, mode: "FULL", selection: { vmUuids: [] } } },
      admin,
    );
    const error = expectError(result, "BAD_USER_INPUT", "input.name");
    const entry = await latest("createJob");
    expect(entry).toMatchObject({
      userId: adminId,
      transport: "HTTP",
      objectType: "Job",
      objectId: null,
      success: false,
      errorCode: "BAD_USER_INPUT",
      message: error.message,
    });
  });

  it("records a mutation refused for its role (FORBIDDEN), which never reached the resolver", async () => {
    const job = await db.job.create({
      data: { name: `kept job ${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    expectError(await server.graphql("mutation($id: ID!) { removeJob(id: $id) }", { id: job.id }, viewer), "FORBIDDEN");
    const entry = await latest("removeJob");
    expect(entry).toMatchObject({
      username: "audit-viewer",
      tokenKind: "SESSION",
      objectType: "Job",
      objectId: job.id,
      objectName: job.name,
      success: false,
      errorCode: "FORBIDDEN",
    });
    expect(await db.job.count({ where: { id: job.id } })).toBe(1);
  });

  it("records sign-ins, refused and accepted, with the name tried and the address but never the password", async () => {
    const wrong = `wrong-${randomBytes(12).toString("hex")}`;
    expectError(
      await server.graphql("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", { u: "admin", p: wrong }),
      "UNAUTHENTICATED",
    );
    const refused = await latest("login");
    expect(refused).toMatchObject({
      userId: null,
      username: "admin",
      tokenId: null,
      transport: "HTTP",
      objectType: "User",
      objectName: "admin",
      success: false,
      errorCode: "UNAUTHENTICATED",
      arguments: { username: "admin", password: "[redacted]" },
    });
    expect(refused.clientAddress).toMatch(/127\.0\.0\.1$/);
    expect(JSON.stringify(refused)).not.toContain(wrong);

    const password = "audit-login-password";
    const token = await createUser(server, "audit-signer", "OPERATOR", password);
    const accepted = await latest("login");
    const user = await db.user.findUniqueOrThrow({ where: { username: "audit-signer" } });
    expect(accepted).toMatchObject({ userId: user.id, username: "audit-signer", objectId: user.id, success: true });
    const table = await wholeTable();
    for (const secret of [wrong, password, token]) expect(table).not.toContain(secret);
  });

  it("stores the arguments of connectPool, createRemote and createJob with every secret redacted", async () => {
    const poolSecret = `pool-${randomBytes(12).toString("hex")}`;
    const urlSecret = `url-${randomBytes(12).toString("hex")}`;
    const remoteSecret = `remote-${randomBytes(12).toString("hex")}`;
    const optionSecret = `option-${randomBytes(12).toString("hex")}`;
    const webhookSecret = `hook-${randomBytes(12).toString("hex")}`;

    const pool = await server.graphql(
      "mutation($input: PoolInput!) { connectPool(input: $input) { id } }",
      { input: { name: "audited pool", url: "http://127.0.0.1:9", username: "root", password: poolSecret } },
      admin,
    );
    expect(pool.errors).toBeDefined();
    const poolEntry = await latest("connectPool");
    expect(poolEntry).toMatchObject({ objectType: "Pool", objectName: "audited pool", success: false });
    expect(poolEntry.arguments).toEqual({
      input: { name: "audited pool", url: "http://127.0.0.1:9", username: "root", password: "[redacted]", allowUnauthorized: false },
    });

    // Credentials written into the URL are cut out of it too.
    await server.graphql(
      "mutation($input: PoolInput!) { connectPool(input: $input) { id } }",
      {
        input: { name: "pool with url credentials", url: `https://root:${urlSecret}@pool.example`, username: "root", password: poolSecret },
      },
      admin,
    );
    expect((await latest("connectPool")).arguments).toMatchObject({ input: { url: "https://root:[redacted]@pool.example" } });

    const remote = await server.graphql(
      "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }",
      {
        input: {
          name: "audited remote",
          kind: "S3",
          location: "nowhere",
          username: "AKIA",
          password: remoteSecret,
          options: { endpoint: "http://127.0.0.1:9", maxAttempts: 1, connectionTimeoutMs: 500, nested: { secretAccessKey: optionSecret } },
        },
      },
      admin,
    );
    expect(remote.errors).toBeDefined();
    const remoteEntry = await latest("createRemote");
    expect(remoteEntry).toMatchObject({ objectType: "Remote", objectName: "audited remote", success: false });
    expect(remoteEntry.arguments).toMatchObject({
      input: {
        username: "AKIA",
        password: "[redacted]",
        options: { endpoint: "http://127.0.0.1:9", nested: { secretAccessKey: "[redacted]" } },
      },
    });

    await server.graphql(
      "mutation($input: JobInput!) { createJob(input: $input) { id } }",
      {
        input: {
          name: "job with a webhook",
          mode: "FULL",
          selection: { vmUuids: [] },
          remoteIds: [randomUUID()],
          settings: { reportWebhookUrl: `https://hooks.example.net/${webhookSecret}`, reportEmails: ["ops@example.net"] },
        },
      },
      admin,
    );
    const jobEntry = await latest("createJob");
    expect(jobEntry.arguments).toMatchObject({
      input: { name: "job with a webhook", settings: { reportWebhookUrl: "[redacted]", reportEmails: ["ops@example.net"] } },
    });

    const table = await wholeTable();
    for (const secret of [poolSecret, urlSecret, remoteSecret, optionSecret, webhookSecret]) expect(table).not.toContain(secret);
  });

  it("keeps long strings short", async () => {
    const long = "x".repeat(5000);
    await server.graphql(
      "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }",
      {
        input: { name: "long", kind: "LOCAL", location: long },
      },
      admin,
    );
    const entry = await latest("createRemote");
    const location = (entry.arguments as any).input.location as string;
    expect(location.length).toBeLessThan(1100);
    expect(location.startsWith("x".repeat(1000))).toBe(true);
  });

  it("records every mutation of the schema, each called by a VIEWER (most refused before their resolver)", async () => {
    // The schema the server runs, built as it builds it: a mutation added later is in this loop without a word here.
    const schema = await buildCairnSchema();
    const fields = Object.values(schema.getMutationType()!.getFields());
    expect(fields.length).toBeGreaterThan(20);
    // A session of its own: logout (last) ends it.
    const caller = await server.login("audit-viewer", "audit-viewer-password");
    const callerId = await sessionIdOf(caller);
    const ordered = [...fields.filter((f) => f.name !== "logout"), ...fields.filter((f) => f.name === "logout")];
    for (const field of ordered) {
      const required = field.args.filter((arg) => isNonNullType(arg.type));
      const declared = required.map((arg) => `$${arg.name}: ${arg.type}`).join(", ");
      const passed = required.map((arg) => `${arg.name}: $${arg.name}`).join(", ");
      const selection = isLeafType(getNamedType(field.type)) ? "" : " { __typename }";
      const query = `mutation${declared ? `(${declared})` : ""} { ${field.name}${passed ? `(${passed})` : ""}${selection} }`;
      const variables = Object.fromEntries(required.map((arg) => [arg.name, sampleValue(arg.type)]));
      const result = await server.graphql(query, variables, field.name === "login" ? undefined : caller);
      const entry = await db.auditEntry.findFirst({ where: { action: field.name }, orderBy: [{ at: "desc" }, { id: "desc" }] });
      expect(entry, `${field.name}: ${JSON.stringify(result)}`).not.toBeNull();
      expect(entry!.success, field.name).toBe(result.errors === undefined);
      if (result.errors) expect(entry!.errorCode, field.name).toBe(result.errors[0].extensions?.code);
      if (field.name !== "login")
        expect(entry, field.name).toMatchObject({ username: "audit-viewer", tokenId: callerId, transport: "HTTP" });
    }
  });

  it("answers the mutation when its audit entry cannot be written, and logs the entry without its arguments", async () => {
    // A real fault in the database, not a mock: this user's entries break a constraint.
    await db.$executeRawUnsafe(`ALTER TABLE "AuditEntry" ADD CONSTRAINT audit_breaker CHECK (username IS DISTINCT FROM 'audit-breaker')`);
    try {
      const password = `breaker-${randomBytes(12).toString("hex")}`;
      const token = await createUser(server, "audit-breaker", "VIEWER", password);
      const minted = expectData(
        await server.graphql<any>(`mutation { createApiToken(name: "breaker token", role: VIEWER) { id token } }`, {}, token),
      ).createApiToken;
      expect(await db.apiToken.count({ where: { id: minted.id } })).toBe(1);
      expect(await db.auditEntry.count({ where: { username: "audit-breaker" } })).toBe(0);
      const lines = server.logs.filter((line) => line.includes("could not write an audit log entry") && line.includes("audit-breaker"));
      expect(lines.map((line) => JSON.parse(line).audit?.action).sort()).toEqual(["createApiToken", "login"]);
      for (const line of lines) {
        expect(JSON.parse(line).audit).not.toHaveProperty("arguments");
        expect(line).not.toContain(password);
        expect(line).not.toContain(minted.token);
      }
    } finally {
      await db.$executeRawUnsafe(`ALTER TABLE "AuditEntry" DROP CONSTRAINT audit_breaker`);
    }
  });

  it("is for ADMIN only: VIEWER and OPERATOR get FORBIDDEN, anonymous UNAUTHENTICATED", async () => {
    expectError(await server.graphql(AUDIT_LOG, {}, viewer), "FORBIDDEN");
    expectError(await server.graphql(AUDIT_LOG, {}, operator), "FORBIDDEN");
    expectError(await server.graphql(AUDIT_LOG, {}), "UNAUTHENTICATED");
    expect(expectData(await server.graphql<any>(AUDIT_LOG, {}, admin)).auditLog.totalCount).toBeGreaterThan(0);
  });

  it("filters by user, action, object, result and time, newest first", async () => {
    const all = expectData(await server.graphql<any>(AUDIT_LOG, { first: 500 }, admin)).auditLog;
    const times = all.nodes.map((n: any) => Date.parse(n.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(all.totalCount).toBe(await db.auditEntry.count());

    const mine = expectData(await server.graphql<any>(AUDIT_LOG, { filter: { userId: adminId }, first: 500 }, admin)).auditLog;
    expect(mine.totalCount).toBe(await db.auditEntry.count({ where: { userId: adminId } }));
    expect(mine.nodes.every((n: any) => n.userId === adminId)).toBe(true);

    const byName = expectData(await server.graphql<any>(AUDIT_LOG, { filter: { username: "audit-viewer" } }, admin)).auditLog;
    expect(byName.nodes.map((n: any) => n.action)).toContain("removeJob");
    expect(byName.nodes.every((n: any) => n.username === "audit-viewer")).toBe(true);

    const failedLogins = expectData(
      await server.graphql<any>(AUDIT_LOG, { filter: { action: "login", success: false, username: "admin" } }, admin),
    ).auditLog;
    expect(failedLogins.totalCount).toBe(1);
    expect(failedLogins.nodes[0]).toMatchObject({ action: "login", success: false, username: "admin" });

    const removal = await latest("removeJob");
    const byObject = expectData(await server.graphql<any>(AUDIT_LOG, { filter: { objectId: removal.objectId } }, admin)).auditLog;
    expect(byObject.nodes.map((n: any) => n.id)).toContain(removal.id);
    expect(byObject.nodes.every((n: any) => n.objectId === removal.objectId)).toBe(true);

    const at = removal.at.toISOString();
    const since = expectData(await server.graphql<any>(AUDIT_LOG, { filter: { since: at }, first: 500 }, admin)).auditLog;
    expect(since.nodes.every((n: any) => Date.parse(n.at) >= Date.parse(at))).toBe(true);
    expect(since.nodes.map((n: any) => n.id)).toContain(removal.id);
    const until = expectData(await server.graphql<any>(AUDIT_LOG, { filter: { until: at }, first: 500 }, admin)).auditLog;
    expect(until.nodes.every((n: any) => Date.parse(n.at) < Date.parse(at))).toBe(true);
    expect(since.totalCount + until.totalCount).toBe(all.totalCount);
  });

  it("pages with first/after: every entry once, in order", async () => {
    const all = expectData(await server.graphql<any>(AUDIT_LOG, { first: 500 }, admin)).auditLog;
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 100; page++) {
      const { auditLog } = expectData(await server.graphql<any>(AUDIT_LOG, { first: 3, after }, admin)) as any;
      expect(auditLog.totalCount).toBe(all.totalCount);
      expect(auditLog.nodes.length).toBeLessThanOrEqual(3);
      expect(auditLog.edges.map((e: any) => e.node.id)).toEqual(auditLog.nodes.map((n: any) => n.id));
      seen.push(...auditLog.nodes.map((n: any) => n.id));
      if (!auditLog.pageInfo.hasNextPage) break;
      after = auditLog.pageInfo.endCursor;
    }
    expect(seen).toEqual(all.nodes.map((n: any) => n.id));
  });

  it("refuses bad filter values with BAD_USER_INPUT naming the field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ filter: { userId: "not-a-uuid" } }, "filter.userId"],
      [{ filter: { action: "drop table" } }, "filter.action"],
      [{ filter: { action: "x".repeat(101) } }, "filter.action"],
      [{ filter: { username: "a\u0000b" } }, "filter.username"],
      [{ filter: { objectId: "x".repeat(201) } }, "filter.objectId"],
      [{ filter: { since: "2030-01-02T00:00:00Z", until: "2030-01-01T00:00:00Z" } }, "filter.until"],
      [{ first: 501 }, "first"],
      [{ first: -1 }, "first"],
      [{ after: "not a cursor" }, "after"],
    ];
    for (const [variables, field] of cases) expectError(await server.graphql(AUDIT_LOG, variables, admin), "BAD_USER_INPUT", field);
    // A date that does not parse is refused by the DateTime scalar itself, before the resolver.
    expectError(await server.graphql(AUDIT_LOG, { filter: { since: "yesterday" } }, admin), "BAD_USER_INPUT");
  });

  it("the retention sweep deletes the entries older than the retention only, in batches", async () => {
    const audit = server.cairn.services.audit; // AUDIT_RETENTION_DAYS: the default, 365
    const now = new Date();
    const probe = (ageDays: number) =>
      db.auditEntry.create({
        data: {
          at: new Date(now.getTime() - ageDays * DAY),
          transport: "HTTP",
          action: "retentionProbe",
          success: true,
          objectName: String(ageDays),
        },
      });
    for (const age of [400, 366, 366, 366, 364, 30, 0]) await probe(age);
    const ages = async () =>
      (await db.auditEntry.findMany({ where: { action: "retentionProbe" }, orderBy: { at: "asc" } })).map((e) => Number(e.objectName));

    expect(await audit.sweep(now)).toBe(4);
    expect(await ages()).toEqual([364, 30, 0]);
    // Later, the same entries are older: the clock passed to the sweep is the one it goes by.
    expect(await audit.sweep(new Date(now.getTime() + 100 * DAY))).toBe(1);
    expect(await ages()).toEqual([30, 0]);
    // Everything else recorded by this file is recent: kept.
    expect(await db.auditEntry.count({ where: { action: { not: "retentionProbe" } } })).toBeGreaterThan(10);

    // Several batches in one sweep.
    const small = new AuditService(db, createLogger("silent"), { retentionDays: 365, sweepBatch: 2 });
    for (let i = 0; i < 5; i++) await probe(500);
    expect(await small.sweep(now)).toBe(5);
    expect(await ages()).toEqual([30, 0]);
  });

  it("sweeps at start and then on its timer, until stopped (a manual clock, no waiting)", async () => {
    const clock = manualClock(Date.now());
    const hour = 3600_000;
    const audit = new AuditService(db, createLogger("silent"), { retentionDays: 31, clock, sweepIntervalMs: 6 * hour });
    const entry = await db.auditEntry.create({
      data: { at: new Date(clock.now().getTime() - 31 * DAY + 3 * hour), transport: "WS", action: "timerProbe", success: true },
    });
    const sweeping = audit.startRetentionSweep();
    try {
      await clock.advance(0);
      expect(await db.auditEntry.count({ where: { id: entry.id } })).toBe(1);
      expect(clock.pending()).toEqual([clock.now().getTime() + 6 * hour]);
      // The next sweep, 6 hours later, finds it 3 hours past the retention.
      await clock.advance(6 * hour);
      expect(await db.auditEntry.count({ where: { id: entry.id } })).toBe(0);
    } finally {
      await sweeping.stop();
    }
    expect(clock.pending()).toEqual([]);
  });
});

describe("AUDIT_RETENTION_DAYS", () => {
  it("defaults to 365 days, reads a whole number of days, and refuses anything else naming the variable", () => {
    expect(loadConfig({}, "/srv/cairn").auditRetentionDays).toBe(365);
    expect(loadConfig({ AUDIT_RETENTION_DAYS: "30" }, "/srv/cairn").auditRetentionDays).toBe(30);
    for (const bad of ["0", "-1", "1.5", "a year", "36501"]) {
      expect(() => loadConfig({ AUDIT_RETENTION_DAYS: bad }, "/srv/cairn")).toThrow(
        /AUDIT_RETENTION_DAYS=.*expected a whole number from 1 to 36500/,
      );
    }
  });
});

/** A value of a GraphQL input type that passes coercion (what the resolver makes of it does not matter here). */
function sampleValue(type: GraphQLInputType): unknown {
  if (isNonNullType(type)) return sampleValue(type.ofType);
  if (isListType(type)) return [];
  if (isEnumType(type)) return type.getValues()[0].value;
  if (isInputObjectType(type)) {
    const fields = Object.values(type.getFields()).filter((field) => isNonNullType(field.type) && field.defaultValue === undefined);
    return Object.fromEntries(fields.map((field) => [field.name, sampleValue(field.type)]));
  }
  switch (type.name) {
    case "ID":
      return randomUUID();
    case "Int":
    case "Float":
    case "SafeInt":
      return 1;
    case "Boolean":
      return false;
    case "DateTime":
      return new Date().toISOString();
    case "JSON":
      return {};
    default:
      return "sample";
  }
}
