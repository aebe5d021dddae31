import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";

/** What must never reach a client: stack frames, dependency paths, the ORM's name, SQL. */
const LEAKS = [
  /\bat \S+ \(/,
  /\bat (file|node):/,
  /node_modules/,
  /prisma/i,
  /\bSELECT\b/,
  /\bINSERT INTO\b/,
  /\bFROM "/,
  /\.ts:\d+/,
  /"stack"/,
  /stacktrace/i,
];

interface RawAnswer {
  status: number;
  text: string;
  body: { data?: any; errors?: { message: string; extensions?: { code?: string; field?: string; reference?: string } }[] };
}

describe("errors: codes, limits, and nothing leaked", () => {
  let server: TestCairn;
  let db: Db;
  let token: string;
  const answers: RawAnswer[] = [];

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    token = await server.login();
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  /** Posts a raw body to /graphql and keeps the answer for the leak check. */
  async function post(body: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
    const response = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
      body,
    });
    const text = await response.text();
    let parsed: RawAnswer["body"] = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      // Not JSON: the leak check still reads the text, and the test asserts on it.
    }
    const answer = { status: response.status, text, body: parsed };
    answers.push(answer);
    return answer;
  }

  const ask = (query: string, variables: Record<string, unknown> = {}) => post(JSON.stringify({ query, variables }));

  function expectClean(answer: RawAnswer) {
    for (const leak of LEAKS) expect(answer.text, `answer leaks ${leak}`).not.toMatch(leak);
  }

  function errorOf(answer: RawAnswer, code: string) {
    expectClean(answer);
    return expectError({ status: answer.status, ...answer.body }, code);
  }

  describe("query limits", () => {
    it("refuses a query nested deeper than the limit with BAD_USER_INPUT naming the limit", async () => {
      const nested = "lastRun { job { ".repeat(7) + "id" + " } }".repeat(7);
      const answer = await ask(`{ jobs { ${nested} } }`);
      const error = errorOf(answer, "BAD_USER_INPUT");
      expect(error.message).toMatch(/nested \d+ levels deep; the limit is 12/);
    });

    it("accepts a query nested up to the limit", async () => {
      const nested = "lastRun { job { ".repeat(5) + "id" + " } }".repeat(5);
      expectData({ status: 200, ...(await ask(`{ jobs { ${nested} } }`)).body });
    });

    it("refuses a query that may select huge lists with BAD_USER_INPUT naming the limit", async () => {
      const answer = await ask(
        "{ runs(first: 500) { nodes { id tasks { id name status message warnings } job { runs(first: 500) { nodes { id status } } } } } }",
      );
      const error = errorOf(answer, "BAD_USER_INPUT");
      expect(error.message).toMatch(/select about \d+ fields; the limit is 20000/);
    });

    it("refuses a huge selection hidden in fragments", async () => {
      const answer = await ask(
        "query { runs(first: 500) { ...page } } fragment page on RunConnection { nodes { tasks { ...task } job { runs(first: 200) { nodes { id } } } } } fragment task on Task { id name kind status progress message }",
      );
      expect(errorOf(answer, "BAD_USER_INPUT").message).toMatch(/the limit is 20000/);
    });

    it("refuses a query with too many aliases with BAD_USER_INPUT naming the limit", async () => {
      const aliases = Array.from({ length: 60 }, (_, i) => `a${i}: me { id }`).join(" ");
      expect(errorOf(await ask(`{ ${aliases} }`), "BAD_USER_INPUT").message).toMatch(/60 aliases; the limit is 50/);
    });

    it("runs nothing of a refused query", async () => {
      const aliases = Array.from({ length: 60 }, (_, i) => `a${i}: createApiToken(name: "alias ${i}", role: VIEWER) { id }`).join(" ");
      errorOf(await ask(`mutation { ${aliases} }`), "BAD_USER_INPUT");
      expect(await db.apiToken.count({ where: { kind: "API" } })).toBe(0);
    });
  });

  describe("malformed requests", () => {
    it("refuses a body over 1 MiB with HTTP 413 and a clear message, without a stack", async () => {
      const answer = await post(JSON.stringify({ query: "{ me { id } }", variables: { padding: "x".repeat(1024 * 1024 + 10) } }));
      expect(answer.status).toBe(413);
      expectClean(answer);
      expect(answer.body.errors?.[0].message).toBe("The request body is larger than 1048576 bytes.");
    });

    it("refuses malformed JSON with HTTP 400, without a stack", async () => {
      const answer = await post('{"query": "{ me { id } }", ');
      expect(answer.status).toBe(400);
      expectClean(answer);
      expect(answer.body.errors?.[0]).toMatchObject({
        message: "The request body is not valid JSON.",
        extensions: { code: "BAD_REQUEST" },
      });
    });

    it("answers a GraphQL syntax error with GRAPHQL_PARSE_FAILED", async () => {
      const answer = await ask("{ me { id ");
      expect(answer.status).toBe(400);
      errorOf(answer, "GRAPHQL_PARSE_FAILED");
    });

    it("answers an unknown field with GRAPHQL_VALIDATION_FAILED naming it", async () => {
      const answer = await ask("{ jobs { id passwordSealed } }");
      expect(errorOf(answer, "GRAPHQL_VALIDATION_FAILED").message).toMatch(/passwordSealed/);
    });

    it("answers a variable of the wrong type with BAD_USER_INPUT naming the variable", async () => {
      const answer = await ask("query($first: Int) { runs(first: $first) { totalCount } }", { first: "ten" });
      expect(errorOf(answer, "BAD_USER_INPUT").message).toMatch(/\$first/);
    });
  });

  describe("ids", () => {
    const lookups = [
      ["job", "query($id: ID!) { job(id: $id) { id } }"],
      ["run", "query($id: ID!) { run(id: $id) { id } }"],
      ["remote", "query($id: ID!) { remote(id: $id) { id } }"],
      ["restore point", "query($id: ID!) { restorePoint(id: $id) { id } }"],
      ["job", "mutation($id: ID!) { removeJob(id: $id) }"],
      ["remote", "mutation($id: ID!) { removeRemote(id: $id) }"],
      ["pool", "mutation($id: ID!) { removePool(id: $id) }"],
      ["run", "mutation($id: ID!) { cancelRun(id: $id) { id } }"],
      ["job", "mutation($id: ID!) { runJob(id: $id) { id } }"],
    ] as const;

    it.each(lookups)("answers NOT_FOUND naming the %s for an unknown id: %s", async (what, query) => {
      const id = randomUUID();
      const error = errorOf(await ask(query, { id }), "NOT_FOUND");
      expect(error.message).toBe(`No ${what} with id ${id}.`);
    });

    it.each(lookups)("answers NOT_FOUND for an id that is not a uuid, not a database error: %s (%s)", async (_what, query) => {
      for (const id of ["42", '\'; DROP TABLE "Job"; --', "x".repeat(5000)]) {
        const error = errorOf(await ask(query, { id }), "NOT_FOUND");
        expect(error.message.length).toBeLessThan(200);
      }
    });

    it("answers NOT_FOUND for a filter id that is not a uuid", async () => {
      errorOf(await ask('{ runs(filter: { jobId: "nope" }) { totalCount } }'), "NOT_FOUND");
      errorOf(await ask('{ restorePoints(filter: { remoteId: "nope" }) { totalCount } }'), "NOT_FOUND");
    });
  });

  describe("engine operations", () => {
    it("answers runJob at once with the run, which ends SKIPPED when the job selects no VM", async () => {
      const job = await db.job.create({
        data: { name: "selects nothing", mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
      });
      const answer = await ask("mutation($id: ID!) { runJob(id: $id) { id status } }", { id: job.id });
      expectClean(answer);
      const run = expectData({ status: answer.status, ...answer.body }).runJob as { id: string; status: string };
      expect(["PENDING", "RUNNING", "SKIPPED"]).toContain(run.status);
      const row = await eventually(`run ${run.id} to end`, async () => {
        const current = await db.run.findUniqueOrThrow({ where: { id: run.id } });
        expect(["SKIPPED", "SUCCESS", "FAILURE"]).toContain(current.status);
        return current;
      });
      expect(row.status).toBe("SKIPPED");
      expect(row.error).toMatch(/No VM matched/);
      expect(row.skipReason).toBe("NOTHING_SELECTED");
    });

    it("answers scanRemote of an empty remote with 0, indexing nothing, and NOT_FOUND for an unknown remote", async () => {
      // scanRemote came with the engine (it answered UNAVAILABLE before): an empty folder holds no restore point.
      const location = path.join(server.dataDir, "empty-remote");
      await mkdir(location);
      const remote = await db.remote.create({ data: { name: "not scanned", kind: "LOCAL", location } });
      const answer = await ask("mutation($id: ID!) { scanRemote(id: $id) }", { id: remote.id });
      expectClean(answer);
      expect(expectData({ status: answer.status, ...answer.body }).scanRemote).toBe(0);
      expect(await db.restorePoint.count()).toBe(0);
      errorOf(await ask("mutation($id: ID!) { scanRemote(id: $id) }", { id: randomUUID() }), "NOT_FOUND");
    });
  });

  describe("unexpected errors", () => {
    it("answers a broken row with INTERNAL_SERVER_ERROR and a reference, and logs the details under that reference", async () => {
      // A restore point whose disks are not a list: reading it fails inside the server, as a bug would.
      const point = await db.restorePoint.create({
        data: { kind: "XVA", vmUuid: randomUUID(), vmName: "broken", timestamp: new Date(), disks: { not: "a list" } },
      });
      const answer = await ask("query($id: ID!) { restorePoint(id: $id) { id disks { id } } }", { id: point.id });
      const error = errorOf(answer, "INTERNAL_SERVER_ERROR");
      const reference = (error.extensions as { reference?: string }).reference;
      expect(reference).toMatch(/^[0-9a-f-]{36}$/);
      expect(error.message).toBe(`Internal error (reference ${reference}); the details are in the server log.`);
      const logged = server.logs.find((line) => line.includes(reference!));
      expect(logged).toBeDefined();
      expect(JSON.parse(logged!).err.stack).toMatch(/\bat /);
      await db.restorePoint.delete({ where: { id: point.id } });
    });

    it.each([
      ["runs(search)", "query($s: String) { runs(filter: { search: $s }) { totalCount } }", "filter.search"],
      ["runs(vmUuid)", "query($s: String) { runs(filter: { vmUuid: $s }) { totalCount } }", "filter.vmUuid"],
      ["restorePoints(vmUuid)", "query($s: String) { restorePoints(filter: { vmUuid: $s }) { totalCount } }", "filter.vmUuid"],
      ["login(username)", 'mutation($s: String!) { login(username: $s, password: "x") { token } }', "username"],
    ])("refuses a NUL byte in %s with BAD_USER_INPUT, not a database error", async (_where, query, field) => {
      const answer = await ask(query, { s: "a\u0000b" });
      expectClean(answer);
      expectError({ status: answer.status, ...answer.body }, "BAD_USER_INPUT", field);
    });
  });

  it("has sent no answer with a stack frame, node_modules, prisma or SQL in this file", () => {
    expect(answers.length).toBeGreaterThan(20);
    for (const answer of answers) expectClean(answer);
  });
});
