/**
 * Every operation of the executable schema (read from buildCairnSchema() here, so that a new operation cannot escape) called
 * by every kind of caller (anonymous; VIEWER, OPERATOR and ADMIN, each as an API token and as a signed-in session) over both
 * transports (HTTP POST and graphql-ws), with arguments generated from the argument types and `__typename` as the selection.
 *
 * What each answer must be: anonymous -> UNAUTHENTICATED (a refused socket over graphql-ws), except `login`; below the
 * operation's role -> FORBIDDEN; at or above it -> never UNAUTHENTICATED, FORBIDDEN or INTERNAL_SERVER_ERROR (NOT_FOUND,
 * BAD_USER_INPUT, CONFLICT, UNAVAILABLE are answers). A subscription over HTTP is a client error. Every error has a code, and
 * no answer holds a stack, a path, SQL, "prisma", a stack overflow or a secret this test knows.
 */
import { randomUUID } from "node:crypto";
import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isRequiredArgument,
  isScalarType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLSchema,
} from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../../server/db/prisma.js";
import { buildCairnSchema } from "../../../server/graphql/build-schema.js";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../../support/cairn-server.js";
import { stopAll } from "../../support/stop-all.js";
import { openDatabase } from "../api-assertions.js";
import { describeAnswer, httpAsk, leaksIn, mapLimited, wsAsk, type Answer, type Operation, type Transport } from "./clients.js";

type Role = "VIEWER" | "OPERATOR" | "ADMIN";
type Kind = "query" | "mutation" | "subscription";

interface Rule {
  /** The least role that may call it; PUBLIC: anyone, signed in or not. */
  role: Role | "PUBLIC";
  /** Anonymous callers get `null` rather than UNAUTHENTICATED (documented: `me` is "null without a token"). */
  anonymousNull?: boolean;
  /**
   * An API token may be refused FORBIDDEN even at the role (issue 10 lets the server choose that tokens cannot mint tokens,
   * or manage their owner's credentials).
   */
  apiTokenMayBeRefused?: boolean;
}

/**
 * The role each operation needs, from the @Authorized decorators of server/graphql/resolvers/*.ts (`@Authorized()` is
 * "signed in", i.e. VIEWER). A schema operation missing here, or a name here the schema lacks, fails the first test.
 */
const RULES: Record<Kind, Record<string, Rule>> = {
  query: {
    me: { role: "VIEWER", anonymousNull: true },
    apiTokens: { role: "VIEWER" },
    jobs: { role: "VIEWER" },
    job: { role: "VIEWER" },
    retentionPreview: { role: "VIEWER" },
    pools: { role: "VIEWER" },
    pool: { role: "VIEWER" },
    vms: { role: "VIEWER" },
    srs: { role: "VIEWER" },
    remotes: { role: "VIEWER" },
    remote: { role: "VIEWER" },
    restorePoints: { role: "VIEWER" },
    restorePoint: { role: "VIEWER" },
    browseRestorePoint: { role: "VIEWER" },
    restorePointPartitions: { role: "VIEWER" },
    runs: { role: "VIEWER" },
    run: { role: "VIEWER" },
    backupStats: { role: "VIEWER" },
    vmProtection: { role: "VIEWER" },
    vmRpo: { role: "VIEWER" },
    rpoReport: { role: "VIEWER" },
    storageTrend: { role: "VIEWER" },
    sessions: { role: "VIEWER" },
    users: { role: "ADMIN" },
    auditLog: { role: "ADMIN" },
    metadataBackups: { role: "VIEWER" },
    configurationBackups: { role: "ADMIN" },
  },
  mutation: {
    login: { role: "PUBLIC" },
    logout: { role: "VIEWER" },
    createApiToken: { role: "VIEWER", apiTokenMayBeRefused: true },
    revokeApiToken: { role: "VIEWER", apiTokenMayBeRefused: true },
    createJob: { role: "ADMIN" },
    updateJob: { role: "ADMIN" },
    removeJob: { role: "ADMIN" },
    runJob: { role: "OPERATOR" },
    cancelRun: { role: "OPERATOR" },
    connectPool: { role: "ADMIN" },
    updatePool: { role: "ADMIN" },
    removePool: { role: "ADMIN" },
    trustPoolCertificate: { role: "ADMIN" },
    createRemote: { role: "ADMIN" },
    updateRemote: { role: "ADMIN" },
    removeRemote: { role: "ADMIN" },
    testRemote: { role: "ADMIN" },
    scanRemote: { role: "ADMIN" },
    restoreVm: { role: "OPERATOR" },
    restoreFiles: { role: "OPERATOR" },
    removeRestorePoint: { role: "ADMIN" },
    checkRestorePoint: { role: "OPERATOR" },
    verifyRestorePoint: { role: "OPERATOR" },
    exportRuns: { role: "VIEWER" },
    changePassword: { role: "VIEWER", apiTokenMayBeRefused: true },
    revokeSession: { role: "VIEWER", apiTokenMayBeRefused: true },
    createUser: { role: "ADMIN" },
    updateUser: { role: "ADMIN" },
    deleteUser: { role: "ADMIN" },
    resetUserPassword: { role: "ADMIN" },
    scanMetadataBackups: { role: "ADMIN" },
    restorePoolMetadata: { role: "OPERATOR" },
    restoreConfiguration: { role: "ADMIN" },
  },
  subscription: {
    runUpdated: { role: "VIEWER" },
    taskUpdated: { role: "VIEWER" },
  },
};

/**
 * Argument values that keep a call harmless and meaningful where the generated ones would not: a token no caller is refused
 * for its role, a LOCAL remote (an S3 one would reach for the network), the real admin credentials for login.
 */
const OVERRIDES: Record<string, Record<string, unknown>> = {
  login: { username: "admin", password: ADMIN_PASSWORD },
  createApiToken: { role: "VIEWER" },
  backupStats: { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date().toISOString() },
  storageTrend: { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date().toISOString() },
  createRemote: { input: { name: "x", kind: "LOCAL", location: "x" } },
  updateRemote: { input: { name: "x", kind: "LOCAL", location: "x" } },
  configurationBackups: { remote: { kind: "LOCAL", location: "x" } },
  restoreConfiguration: { input: { remote: { kind: "LOCAL", location: "x" } } },
};

const RANK: Record<Role, number> = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };
const ROLES: Role[] = ["VIEWER", "OPERATOR", "ADMIN"];
/** What an authorised caller may be answered: the call itself was wrong, or something it names is missing or busy. */
const ANSWERS_AT_ROLE = new Set(["NOT_FOUND", "BAD_USER_INPUT", "CONFLICT", "UNAVAILABLE", "INTEGRITY_ERROR", "RATE_LIMITED"]);
/** graphql-ws close codes for a refused connection_init (Forbidden) or an unauthorised socket. */
const REFUSED_SOCKET = new Set([4401, 4403]);

interface Caller {
  name: string;
  role: Role | "anonymous";
  kind: "none" | "api" | "session";
  token?: string;
  /** A fresh credential of the same kind and role, for calls that may kill the one they use (logout, revocations). */
  fresh?: () => Promise<string>;
}

interface Check {
  kind: Kind;
  name: string;
  rule: Rule | undefined;
  operation: Operation;
  caller: Caller;
  transport: Transport;
  /** Uses a throw-away credential. */
  throwaway: boolean;
}

/** A value of an input type: ID a fresh uuid, String "x", Int 1, Boolean false, an enum its first value, an input object its required fields. */
function sample(type: GraphQLInputType, depth = 0): unknown {
  if (isNonNullType(type)) return sample(type.ofType as GraphQLInputType, depth);
  if (isListType(type)) return [sample(type.ofType as GraphQLInputType, depth)];
  if (isEnumType(type)) return type.getValues()[0].name;
  if (isInputObjectType(type)) {
    if (depth > 8) throw new Error(`input type ${type.name} nests too deep to generate`);
    const value: Record<string, unknown> = {};
    for (const field of Object.values(type.getFields())) {
      if (isNonNullType(field.type) && field.defaultValue === undefined) value[field.name] = sample(field.type, depth + 1);
    }
    return value;
  }
  if (isScalarType(type)) {
    switch (type.name) {
      case "ID":
        return randomUUID();
      case "String":
        return "x";
      case "Int":
      case "Float":
      case "SafeInt":
        return 1;
      case "Boolean":
        return false;
      case "JSON":
        return {};
      case "DateTime":
        return new Date().toISOString();
      default:
        return "x";
    }
  }
  throw new Error(`cannot generate a value of ${String(type)}`);
}

/** Whether an argument type holds a required ID somewhere (an operation on a named object, which a random uuid makes harmless). */
function holdsRequiredId(type: GraphQLInputType, depth = 0): boolean {
  if (!isNonNullType(type)) return false;
  const inner = type.ofType;
  if (isScalarType(inner)) return inner.name === "ID";
  if (isInputObjectType(inner) && depth < 8) {
    return Object.values(inner.getFields()).some((field) => field.defaultValue === undefined && holdsRequiredId(field.type, depth + 1));
  }
  return false;
}

/** The operation text and variables of one call: every required argument as a variable, `__typename` for an object. */
function operationFor(kind: Kind, field: GraphQLField<unknown, unknown>): Operation {
  const required = field.args.filter(isRequiredArgument);
  const variables: Record<string, unknown> = {};
  for (const arg of required) variables[arg.name] = sample(arg.type);
  Object.assign(variables, OVERRIDES[field.name] ?? {});
  const definitions = required.map((arg) => `$${arg.name}: ${String(arg.type)}`).join(", ");
  const args = required.map((arg) => `${arg.name}: $${arg.name}`).join(", ");
  const selection = isLeafType(getNamedType(field.type)) ? "" : " { __typename }";
  const query = `${kind} Attack${definitions ? `(${definitions})` : ""} { ${field.name}${args ? `(${args})` : ""}${selection} }`;
  return { query, variables };
}

function operationsOf(schema: GraphQLSchema): { kind: Kind; field: GraphQLField<unknown, unknown> }[] {
  const roots: [Kind, ReturnType<GraphQLSchema["getQueryType"]>][] = [
    ["query", schema.getQueryType()],
    ["mutation", schema.getMutationType()],
    ["subscription", schema.getSubscriptionType()],
  ];
  return roots.flatMap(([kind, type]) => Object.values(type?.getFields() ?? {}).map((field) => ({ kind, field })));
}

const codesOf = (answer: Answer) => answer.errors.map((error) => error.code ?? "<no code>");

/** Why an answer is wrong for its check, or undefined when it is right. */
function judge(check: Check, answer: Answer, secrets: string[]): string | undefined {
  const { rule, caller, transport, kind } = check;
  if (!rule) return "the operation is missing from the RULES table";
  const leaks = leaksIn(answer, JSON.stringify(check.operation), secrets);
  if (leaks.length > 0) return `leaks ${leaks.join(", ")}`;
  const codes = codesOf(answer);
  if (codes.includes("<no code>")) return "an error without extensions.code";
  if (codes.some((code) => code.startsWith("TEST_"))) return "no proper answer";
  if (codes.includes("INTERNAL_SERVER_ERROR")) return "INTERNAL_SERVER_ERROR";
  const refusedSocket = transport === "WS" && answer.closed !== undefined && REFUSED_SOCKET.has(answer.closed.code);
  if (answer.closed && !refusedSocket) return `the socket closed with ${answer.closed.code}`;

  if (kind === "subscription" && transport === "HTTP") {
    // Not a transport for subscriptions: any client error but INTERNAL, never data.
    if (codes.length === 0) return "a subscription over HTTP was not refused";
    if ((answer.status ?? 200) >= 500) return `HTTP ${answer.status}`;
    return undefined;
  }

  if (caller.role === "anonymous") {
    if (rule.role === "PUBLIC") {
      if (refusedSocket) return undefined; // a socket may refuse anonymous connections outright
      return codes.length === 0 ? undefined : `a public operation refused: ${codes.join(", ")}`;
    }
    if (refusedSocket) return undefined;
    if (rule.anonymousNull && codes.length === 0 && answer.data?.[check.name] === null) return undefined;
    return codes.includes("UNAUTHENTICATED") ? undefined : "expected UNAUTHENTICATED";
  }

  if (refusedSocket) return "a valid credential's socket was refused";
  const needed = rule.role === "PUBLIC" ? "VIEWER" : rule.role;
  if (RANK[caller.role] < RANK[needed]) return codes.includes("FORBIDDEN") ? undefined : `expected FORBIDDEN (needs ${needed})`;

  if (codes.includes("FORBIDDEN") && rule.apiTokenMayBeRefused && caller.kind === "api") return undefined;
  const unexpected = codes.filter((code) => !ANSWERS_AT_ROLE.has(code));
  if (unexpected.length > 0) return `refused at its role: ${unexpected.join(", ")}`;
  if (kind !== "subscription" && codes.length === 0 && answer.data?.[check.name] === undefined) return "neither data nor an error";
  return undefined;
}

describe("every operation x every caller x both transports", () => {
  let server: TestCairn;
  let db: Db;
  let schema: GraphQLSchema;
  let adminSession: string;
  let poke: (variables: Record<string, unknown>) => Promise<void>;
  const callers: Caller[] = [];
  const secrets: string[] = [ADMIN_PASSWORD];
  const counts = { operations: 0, callers: 0, transports: 2, checks: 0, passed: 0 };
  const failures: string[] = [];

  beforeAll(async () => {
    schema = await buildCairnSchema();
    server = await startTestCairn({ lab: true });
    db = openDatabase(server);
    adminSession = await server.login();
    secrets.push(adminSession, server.dataDir, process.cwd());

    const passwords: Record<Role, string> = { VIEWER: "viewer-secret-pw", OPERATOR: "operator-secret-pw", ADMIN: ADMIN_PASSWORD };
    const usernames: Record<Role, string> = { VIEWER: "vic-viewer", OPERATOR: "olga-operator", ADMIN: "admin" };
    await createUser(server, usernames.VIEWER, "VIEWER", passwords.VIEWER);
    await createUser(server, usernames.OPERATOR, "OPERATOR", passwords.OPERATOR);
    secrets.push(passwords.VIEWER, passwords.OPERATOR);

    const mintToken = async (role: Role) => {
      const result = await server.graphql<{ createApiToken: { token: string } }>(
        "mutation($n: String!, $r: Role!) { createApiToken(name: $n, role: $r) { token } }",
        { n: `attack-${role}-${randomUUID().slice(0, 8)}`, r: role },
        adminSession,
      );
      if (!result.data) throw new Error(`could not mint a ${role} token: ${JSON.stringify(result.errors)}`);
      secrets.push(result.data.createApiToken.token);
      return result.data.createApiToken.token;
    };
    const signIn = async (role: Role) => {
      const token = await server.login(usernames[role], passwords[role]);
      secrets.push(token);
      return token;
    };
    callers.push({ name: "anonymous", role: "anonymous", kind: "none" });
    for (const role of ROLES)
      callers.push({ name: `${role} API token`, role, kind: "api", token: await mintToken(role), fresh: () => mintToken(role) });
    for (const role of ROLES)
      callers.push({ name: `${role} session`, role, kind: "session", token: await signIn(role), fresh: () => signIn(role) });
    counts.callers = callers.length;

    // A real run and task, so that a live subscription has something to deliver: events for them are published until
    // the first message arrives (graphql-ws says nothing while a subscription is merely live).
    const job = await db.job.create({
      data: { name: `attack-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    const run = await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "PENDING" } });
    const task = await db.task.create({ data: { runId: run.id, position: 0, kind: "vm", name: "attack", warnings: [] } });
    poke = async (variables) => {
      const ids = Object.values(variables).filter((value): value is string => typeof value === "string");
      const { events } = server.cairn.services;
      await events.publish({ type: "run", runId: run.id, jobId: job.id });
      for (const id of ids) {
        await events.publish({ type: "run", runId: run.id, jobId: id });
        await events.publish({ type: "task", runId: id, taskId: task.id });
      }
    };
  });

  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  it("has a rule for every operation of the schema, and none for an operation it lacks", () => {
    const inSchema = operationsOf(schema).map(({ kind, field }) => `${kind} ${field.name}`);
    const inTable = Object.entries(RULES).flatMap(([kind, rules]) => Object.keys(rules).map((name) => `${kind} ${name}`));
    expect(
      inSchema.filter((name) => !inTable.includes(name)),
      "operations of the schema without a rule",
    ).toEqual([]);
    expect(
      inTable.filter((name) => !inSchema.includes(name)),
      "rules for operations the schema lacks",
    ).toEqual([]);
  });

  function checksFor(transport: Transport): Check[] {
    const checks: Check[] = [];
    for (const { kind, field } of operationsOf(schema)) {
      const rule = RULES[kind][field.name];
      const operation = operationFor(kind, field);
      // A mutation acting on the caller itself (no object named by id) may revoke or change the credential it used.
      const throwaway = kind === "mutation" && !field.args.some((arg) => holdsRequiredId(arg.type)) && field.name !== "login";
      for (const caller of callers) {
        checks.push({ kind, name: field.name, rule, operation, caller, transport, throwaway: throwaway && caller.kind !== "none" });
      }
    }
    return checks;
  }

  async function perform(check: Check): Promise<Answer> {
    const token = check.throwaway ? await check.caller.fresh!() : check.caller.token;
    if (check.transport === "HTTP") return httpAsk(server.url, check.operation, token);
    if (check.kind === "subscription") {
      const variables = check.operation.variables ?? {};
      return wsAsk(server.url, check.operation, token, { subscription: { poke: () => poke(variables), liveMs: 5_000 } });
    }
    return wsAsk(server.url, check.operation, token);
  }

  async function runAll(transport: Transport): Promise<string[]> {
    const checks = checksFor(transport);
    const found: string[] = [];
    await mapLimited(checks, 4, async (check) => {
      const answer = await perform(check);
      const why = judge(check, answer, secrets);
      if (process.env.ATTACK_VERBOSE)
        console.log(
          `${why ? "FAIL" : "ok  "} ${check.kind} ${check.name} as ${check.caller.name} over ${transport}: ${describeAnswer(answer)}`,
        );
      counts.checks++;
      if (why === undefined) counts.passed++;
      else found.push(`${check.kind} ${check.name} as ${check.caller.name} over ${transport}: ${why}; got ${describeAnswer(answer)}`);
    });
    counts.operations = new Set(checks.map((check) => `${check.kind} ${check.name}`)).size;
    failures.push(...found);
    return found;
  }

  it("answers every operation as the table says, for every caller, over HTTP", { timeout: 300_000 }, async () => {
    expect(await runAll("HTTP")).toEqual([]);
  });

  it("answers every operation as the table says, for every caller, over graphql-ws", { timeout: 300_000 }, async () => {
    expect(await runAll("WS")).toEqual([]);
  });

  it("is still healthy after the whole matrix", async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    const me = await httpAsk(server.url, { query: "{ me { username } }" }, adminSession);
    expect(me.data).toEqual({ me: { username: "admin" } });
    for (const failure of failures) console.log(`  FAIL ${failure}`);
    console.log(
      `operations-by-role: ${counts.operations} operations x ${counts.callers} callers (anonymous + VIEWER/OPERATOR/ADMIN as API token and session) x ${counts.transports} transports = ${counts.checks} checks, ${counts.passed} passed, ${counts.checks - counts.passed} failed`,
    );
  });
});
