/**
 * graphql-ws is as strict as HTTP: the same validation and query limits, the same error codes and formatting (nothing of the
 * server's insides in a message), the same refusal of over-nested requests, and introspection for signed-in callers only.
 * Each case is sent over both transports and must get the same answer.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GraphQLError } from "graphql";
import type { Db } from "../../server/db/prisma.js";
import { createErrorFormatter } from "../../server/graphql/format-error.js";
import { createLogger } from "../../server/log.js";
import { createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";
import { openDatabase } from "./api-assertions.js";
import { openSocket, runOverSocket, runRawOverSocket, type OpenSocket, type SocketAnswer } from "./graphql-ws-client.js";

/** What must never reach a client: stack frames, dependency paths, the ORM's name, SQL, an engine's stack overflow. */
const LEAKS = [
  /\bat \S+ \(/,
  /\bat (file|node):/,
  /node_modules/,
  /prisma/i,
  /\bSELECT\b/,
  /\.ts:\d+/,
  /stacktrace/i,
  /call stack/i,
  /RangeError/,
];

const DEEP = 10_000;

describe("graphql-ws is as strict as HTTP", () => {
  let server: TestCairn;
  let db: Db;
  let viewer: string;
  let socket: OpenSocket;
  let wsUrl: string;
  const answers: string[] = [];

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    viewer = await createUser(server, "viewer", "VIEWER");
    wsUrl = `${server.url.replace(/^http/, "ws")}/graphql`;
    socket = openSocket(wsUrl, `Bearer ${viewer}`);
    await socket.connected;
  });
  afterAll(() =>
    stopAll(
      () => socket?.dispose(),
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  /** Posts a body (an object, or JSON text as sent) to /graphql; `null` token: anonymous. */
  async function overHttp(body: unknown, token: string | null = viewer): Promise<SocketAnswer & { status: number }> {
    const response = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await response.text();
    answers.push(text);
    return { ...JSON.parse(text), status: response.status };
  }

  async function overSocket(query: string, variables: Record<string, unknown> = {}, operationName?: string): Promise<SocketAnswer> {
    const answer = await runOverSocket(socket.client, query, variables, operationName);
    answers.push(JSON.stringify(answer));
    return answer;
  }

  /** Variables as JSON text, sent as they are (too deep for JSON.stringify, which overflows before the server sees them). */
  async function bothRefuseRaw(query: string, variablesJson: string, code: string) {
    const payload = `{"query":${JSON.stringify(query)},"variables":${variablesJson}}`;
    const http = await overHttp(payload);
    const ws = await runRawOverSocket(wsUrl, `Bearer ${viewer}`, payload);
    answers.push(JSON.stringify(ws));
    return sameRefusal(http, ws, code);
  }

  /** Sends the operation over both transports; both must fail with one error of `code`, with the same message. */
  async function bothRefuse(query: string, variables: Record<string, unknown>, code: string, operationName?: string) {
    return sameRefusal(
      await overHttp({ query, variables, ...(operationName ? { operationName } : {}) }),
      await overSocket(query, variables, operationName),
      code,
    );
  }

  function sameRefusal(http: SocketAnswer, ws: SocketAnswer, code: string) {
    for (const [transport, answer] of [
      ["HTTP", http],
      ["graphql-ws", ws],
    ] as const) {
      expect(answer.errors, `${transport}: ${JSON.stringify(answer)}`).toHaveLength(1);
      expect(answer.errors![0].extensions?.code, `${transport}: ${JSON.stringify(answer)}`).toBe(code);
      for (const leak of LEAKS) expect(JSON.stringify(answer), `${transport} leaks ${leak}`).not.toMatch(leak);
    }
    expect(ws.errors![0].message).toBe(http.errors![0].message);
    return ws.errors![0];
  }

  describe("query limits", () => {
    it("refuses the 8-deep `vms { pool { vms … } }` query of a VIEWER with BAD_USER_INPUT naming the limit", async () => {
      const query = `{ ${"vms { uuid pool { ".repeat(8)}id${" } }".repeat(8)} }`;
      const error = await bothRefuse(query, {}, "BAD_USER_INPUT");
      expect(error.message).toMatch(/nested \d+ levels deep; the limit is 12/);
    });

    it("refuses a huge selection and too many aliases alike", async () => {
      const cost = "{ runs(first: 500) { nodes { id tasks { id name status message } job { runs(first: 500) { nodes { id } } } } } }";
      expect((await bothRefuse(cost, {}, "BAD_USER_INPUT")).message).toMatch(/the limit is 20000/);
      const aliases = `{ ${Array.from({ length: 60 }, (_, i) => `a${i}: me { id }`).join(" ")} }`;
      expect((await bothRefuse(aliases, {}, "BAD_USER_INPUT")).message).toMatch(/60 aliases; the limit is 50/);
    });

    it("checks what depends on each call again when the same document comes back (it is parsed and validated once)", async () => {
      const query = "query Runs($first: Int) { runs(first: $first) { totalCount } } query Me { me { username } }";
      expect(await overSocket(query, { first: 5 }, "Runs")).toEqual({ data: { runs: { totalCount: 0 } } });
      expect(await overSocket(query, {}, "Me")).toEqual({ data: { me: { username: "viewer" } } });
      await bothRefuse(query, { first: "ten" }, "BAD_USER_INPUT", "Runs");
      await bothRefuse(query, {}, "OPERATION_RESOLUTION_FAILURE", "Nope");
      // A refused document is not kept: refused again, with the same words.
      const unknown = "{ jobs { id passwordSealed } }";
      const first = await bothRefuse(unknown, {}, "GRAPHQL_VALIDATION_FAILED");
      expect((await bothRefuse(unknown, {}, "GRAPHQL_VALIDATION_FAILED")).message).toBe(first.message);
    });

    it("runs a query within the limits over the socket", async () => {
      const answer = await overSocket("{ me { username role } jobs { id } }");
      expect(answer).toEqual({ data: { me: { username: "viewer", role: "VIEWER" }, jobs: [] } });
    });
  });

  describe("error codes", () => {
    it.each([
      ["a syntax error", "{ me { id ", {}, "GRAPHQL_PARSE_FAILED"],
      ["an unknown field", "{ jobs { id passwordSealed } }", {}, "GRAPHQL_VALIDATION_FAILED"],
      ["a variable of the wrong type", "query($first: Int) { runs(first: $first) { totalCount } }", { first: "ten" }, "BAD_USER_INPUT"],
      ["a missing required variable", "query($id: ID!) { job(id: $id) { id } }", {}, "BAD_USER_INPUT"],
      ["an unknown operation name", "query A { me { id } } query B { me { id } }", {}, "OPERATION_RESOLUTION_FAILURE"],
      ["an unknown id", "query($id: ID!) { job(id: $id) { id } }", { id: randomUUID() }, "NOT_FOUND"],
      ["a mutation above the role", "mutation($id: ID!) { cancelRun(id: $id) { id } }", { id: randomUUID() }, "FORBIDDEN"],
      ["a NUL byte", "query($s: String) { runs(filter: { search: $s }) { totalCount } }", { s: "a\u0000b" }, "BAD_USER_INPUT"],
    ])("answers %s with the same code on both transports", async (_what, query, variables, code) => {
      await bothRefuse(query, variables, code);
    });

    it("answers an internal error over the socket with INTERNAL_SERVER_ERROR and a reference logged with the details", async () => {
      const point = await db.restorePoint.create({
        data: { kind: "XVA", vmUuid: randomUUID(), vmName: "broken", timestamp: new Date(), disks: { not: "a list" } },
      });
      const answer = await overSocket("query($id: ID!) { restorePoint(id: $id) { id disks { id } } }", { id: point.id });
      const error = answer.errors?.[0];
      expect(error?.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
      const reference = error?.extensions?.reference;
      expect(reference).toMatch(/^[0-9a-f-]{36}$/);
      expect(error?.message).toBe(`Internal error (reference ${reference}); the details are in the server log.`);
      expect(server.logs.some((line) => line.includes(reference!))).toBe(true);
      for (const leak of LEAKS) expect(JSON.stringify(answer)).not.toMatch(leak);
      await db.restorePoint.delete({ where: { id: point.id } });
    });

    it("formats the errors of a subscription's events: an event about an unknown run is NOT_FOUND, not a raw error", async () => {
      const { id: jobId } = await db.job.create({
        data: { name: `job-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
      });
      const missingRun = randomUUID();
      const errors = new Promise<SocketAnswer["errors"]>((resolve, reject) => {
        const dispose = socket.client.subscribe(
          { query: "subscription($j: ID) { runUpdated(jobId: $j) { id } }", variables: { j: jobId } },
          {
            next: (result) => {
              if (!result.errors) return;
              dispose();
              resolve(result.errors as SocketAnswer["errors"]);
            },
            error: reject,
            complete: () => undefined,
          },
        );
      });
      // Published until the subscription is live and its first event answered (graphql-ws does not say when it is live).
      let done = false;
      void errors.finally(() => (done = true));
      for (let i = 0; i < 200 && !done; i++) {
        await server.cairn.services.events.publish({ type: "run", runId: missingRun, jobId });
        await Promise.race([errors.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 50))]);
      }
      const [error] = (await errors)!;
      expect(error.extensions?.code).toBe("NOT_FOUND");
      expect(error.message).toBe(`No run with id ${missingRun}.`);
    });
  });

  it("formats an error thrown by a subscription's subscribe (an unknown job) like any other", async () => {
    const jobId = randomUUID();
    const answer = await overSocket("subscription($j: ID) { runUpdated(jobId: $j) { id } }", { j: jobId });
    expect(answer.errors).toHaveLength(1);
    expect(answer.errors![0]).toMatchObject({ message: `No job with id ${jobId}.`, extensions: { code: "NOT_FOUND" } });
  });

  describe("over-nested requests", () => {
    const list = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;
    const object = (depth: number) => `${"{ a: ".repeat(depth)}1${" }".repeat(depth)}`;
    it.each([
      ["a list literal 10,000 deep", `{ runs(first: ${list(DEEP)}) { totalCount } }`, {}],
      ["a list literal 150 deep", `{ runs(first: ${list(150)}) { totalCount } }`, {}],
      ["an input object literal 10,000 deep", `{ runs(filter: ${object(DEEP)}) { totalCount } }`, {}],
      ["a selection 10,000 deep", `{ ${"jobs { lastRun { job { ".repeat(DEEP / 3)}id${" } } }".repeat(DEEP / 3)} }`, {}],
    ])("refuses %s with BAD_USER_INPUT naming the limit, on both transports", async (_what, query, variables) => {
      const error = await bothRefuse(query, variables, "BAD_USER_INPUT");
      expect(error.message).toMatch(/more than 100 levels deep; the limit is 100/);
    });

    it.each([
      [
        "input object variables 10,000 deep",
        "query($f: RunFilter) { runs(filter: $f) { totalCount } }",
        `{"f":${'{"a":'.repeat(DEEP)}1${"}".repeat(DEEP)}}`,
      ],
      ["list variables 10,000 deep", "query($t: [String!]) { vms(tags: $t) { uuid } }", `{"t":${list(DEEP)}}`],
    ])("refuses %s with BAD_USER_INPUT naming the limit, on both transports", async (_what, query, variablesJson) => {
      const error = await bothRefuseRaw(query, variablesJson, "BAD_USER_INPUT");
      expect(error.message).toMatch(/variables nest lists or objects more than 100 levels deep; the limit is 100/);
    });

    it("ignores brackets inside strings and comments", async () => {
      const query = `# ${"[".repeat(500)}\n{ runs(filter: { search: "${"[{(".repeat(60)}" }) { totalCount } }`;
      expect(await overSocket(query)).toEqual({ data: { runs: { totalCount: 0 } } });
      expect((await overHttp({ query })).data).toEqual({ runs: { totalCount: 0 } });
    });

    it("answers a document over the token budget with GRAPHQL_PARSE_FAILED", async () => {
      const query = `{ ${"__typename ".repeat(30_000)} }`;
      const error = await bothRefuse(query, {}, "GRAPHQL_PARSE_FAILED");
      expect(error.message).toMatch(/more th\w+ 20000 tokens/);
    });
  });

  describe("transport", () => {
    it("answers a subscription sent over HTTP POST with BAD_REQUEST pointing to graphql-ws", async () => {
      const answer = await overHttp({ query: "subscription { runUpdated { id } }" });
      expect(answer.status).toBe(400);
      expect(answer.errors).toHaveLength(1);
      expect(answer.errors![0].extensions?.code).toBe("BAD_REQUEST");
      expect(answer.errors![0].message).toMatch(/Subscriptions need graphql-ws on \/graphql/);
    });

    it("answers a persisted query (right or wrong hash, with or without the query) with a client error, not INTERNAL", async () => {
      const query = "{ me { id } }";
      for (const body of [
        { query, extensions: { persistedQuery: { version: 1, sha256Hash: "0".repeat(64) } } },
        { extensions: { persistedQuery: { version: 1, sha256Hash: "0".repeat(64) } } },
        { query, extensions: { persistedQuery: { version: 2, sha256Hash: "nope" } } },
      ]) {
        const answer = await overHttp(body);
        expect(answer.errors?.[0].extensions?.code, JSON.stringify(answer)).toBe("PERSISTED_QUERY_NOT_SUPPORTED");
      }
    });
  });

  describe("introspection", () => {
    it.each([
      ["__schema", "{ __schema { queryType { name } } }"],
      ["__type", '{ __type(name: "Job") { name fields { name } } }'],
      ["__schema in a fragment", "{ ...F } fragment F on Query { __schema { types { name } } }"],
      ["__type in an inline fragment, aliased", '{ ... on Query { t: __type(name: "Pool") { name } } }'],
      ["__schema next to login", 'mutation L { login(username: "a", password: "b") { token } } query Q { __schema { types { name } } }'],
    ])("refuses %s to an anonymous caller with UNAUTHENTICATED saying to sign in", async (_what, query) => {
      const answer = await overHttp({ query, operationName: query.includes("query Q") ? "Q" : undefined }, null);
      expect(answer.status).toBe(401);
      expect(answer.errors).toHaveLength(1);
      expect(answer.errors![0].extensions?.code).toBe("UNAUTHENTICATED");
      expect(answer.errors![0].message).toMatch(/Introspection needs a signed-in caller: sign in/);
      expect(answer.data ?? null).toBeNull();
    });

    it("lets an anonymous caller sign in, ask `me` (null) and `__typename`, and nothing else", async () => {
      expect((await overHttp({ query: "{ __typename me { id } }" }, null)).data).toEqual({ __typename: "Query", me: null });
      const login = await overHttp(
        { query: 'mutation($p: String!) { login(username: "viewer", password: $p) { token } }', variables: { p: "viewer-password" } },
        null,
      );
      expect(login.data?.login.token).toMatch(/^cairn_/);
      for (const query of ["{ jobs { id } }", "mutation { logout }", "{ me { id } jobs { id } }"]) {
        const answer = await overHttp({ query }, null);
        expect(answer.errors?.[0].extensions?.code, query).toBe("UNAUTHENTICATED");
        expect(answer.errors?.[0].message).toMatch(/Sign in first/);
      }
    });

    it("answers introspection to a signed-in caller on both transports", async () => {
      const query = '{ __schema { queryType { name } } __type(name: "Job") { name } }';
      const expected = { __schema: { queryType: { name: "Query" } }, __type: { name: "Job" } };
      expect((await overHttp({ query })).data).toEqual(expected);
      expect((await overSocket(query)).data).toEqual(expected);
    });
  });

  describe("the error formatter, for what the transports no longer let through", () => {
    const format = createErrorFormatter(createLogger("silent"));

    it("never passes on a stack overflow's words, even under a client-error code", () => {
      const overflow = new RangeError("Maximum call stack size exceeded");
      const wrapped = new GraphQLError("Syntax Error: Maximum call stack size exceeded", {
        originalError: new GraphQLError(overflow.message, { originalError: overflow }),
        extensions: { code: "GRAPHQL_PARSE_FAILED" },
      });
      const formatted = format({ message: wrapped.message, extensions: { code: "GRAPHQL_PARSE_FAILED" } }, wrapped);
      expect(formatted).toEqual({
        message: "The request could not be read: it is nested too deeply.",
        extensions: { code: "GRAPHQL_PARSE_FAILED" },
      });
    });

    it("answers Apollo's code-less 4xx refusals (a persisted query's wrong hash) with BAD_REQUEST", () => {
      const refusal = new GraphQLError("provided sha does not match query", { extensions: { http: { status: 400 } } });
      const formatted = format({ message: refusal.message, extensions: { code: "INTERNAL_SERVER_ERROR" } }, refusal);
      expect(formatted).toEqual({ message: "provided sha does not match query", extensions: { code: "BAD_REQUEST" } });
    });
  });

  it("has sent no answer with a stack frame, node_modules, prisma, SQL or a stack overflow in this file", () => {
    expect(answers.length).toBeGreaterThan(40);
    for (const answer of answers) for (const leak of LEAKS) expect(answer).not.toMatch(leak);
  });
});
