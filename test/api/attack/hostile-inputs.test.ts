/**
 * The hostile-inputs table (hostile-inputs.table.ts) thrown at a running server: every row over HTTP, and the rows that make
 * sense there over graphql-ws too. Each must answer a clear error with an `extensions.code` the row accepts (or, where the
 * row says so, be served normally), over HTTP never with a 5xx, and no answer may hold a stack, a server path, SQL, "prisma",
 * a stack overflow or a secret this test knows. After the whole table, /healthz answers 200 and a normal query still works.
 */
import { mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../../support/cairn-server.js";
import { stopAll } from "../../support/stop-all.js";
import { describeAnswer, httpAsk, httpRaw, leaksIn, mapLimited, operationJson, wsAsk, type Answer, type Transport } from "./clients.js";
import { DATA, hostileRows, type Caller, type GraphQLRow, type HttpRow, type Row, type WsRow } from "./hostile-inputs.table.js";

const REFUSED_SOCKET = new Set([4401, 4403]);
/** Over HTTP a subscription is refused as a request, whatever the row expects of it over graphql-ws. */
const REQUEST_CODES = [
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_USER_INPUT",
  "BAD_REQUEST",
  "OPERATION_RESOLUTION_FAILURE",
  "UNAUTHENTICATED",
];

describe("hostile inputs", () => {
  let server: TestCairn;
  let outside: string;
  let rows: Row[];
  const tokens: Partial<Record<Caller, string>> = {};
  const secrets: string[] = [ADMIN_PASSWORD];
  const failures: string[] = [];
  const counts = { rows: 0, http: 0, ws: 0 };

  beforeAll(async () => {
    server = await startTestCairn();
    // Every credential first: the sign-in rows below are refused sign-ins, which the server may throttle.
    tokens.ADMIN = await server.login();
    tokens.OPERATOR = await createUser(server, "oscar-operator", "OPERATOR", "oscar-secret-pw");
    tokens.VIEWER = await createUser(server, "vanna-viewer", "VIEWER", "vanna-secret-pw");
    secrets.push(tokens.ADMIN, tokens.OPERATOR, tokens.VIEWER, "oscar-secret-pw", "vanna-secret-pw", server.dataDir, process.cwd());

    const remoteDir = path.join(server.dataDir, "remote-ok");
    await mkdir(remoteDir);
    outside = await mkdtemp(path.join(os.tmpdir(), "cairn-attack-outside-"));
    const symlinkOut = path.join(server.dataDir, "link-out");
    await symlink(outside, symlinkOut);
    const job = await httpAsk(
      server.url,
      {
        query: "mutation($i: JobInput!) { createJob(input: $i) { id } }",
        variables: {
          i: {
            name: "attack target",
            mode: "ROLLING_SNAPSHOT",
            enabled: false,
            selection: { smart: { tagsAll: ["attack"] } },
            schedules: [{ cron: "0 2 * * *", snapshotRetention: 1 }],
          },
        },
      },
      tokens.ADMIN,
    );
    const jobId = (job.data?.createJob as { id?: string } | undefined)?.id;
    if (!jobId) throw new Error(`could not create the target job: ${describeAnswer(job)}`);
    rows = hostileRows({ remoteDir, symlinkOut, symlinkTarget: await realpath(outside), jobId, unique: () => randomUUID().slice(0, 8) });
  });

  afterAll(() =>
    stopAll(
      () => server?.stop(),
      () => outside && rm(outside, { recursive: true, force: true }),
    ),
  );

  const sentOf = (row: Row) =>
    row.kind === "graphql"
      ? operationJson(row)
      : row.kind === "http"
        ? Buffer.from(row.body).toString("utf8")
        : row.frames.map((frame) => Buffer.from(frame).toString("utf8")).join("\n");

  /** Failures common to every answer: leaks, errors without a code, hangs, 5xx. */
  function commonProblems(row: Row, answer: Answer): string | undefined {
    const leaks = leaksIn(answer, sentOf(row), secrets);
    if (leaks.length > 0) return `leaks ${leaks.join(", ")}`;
    const codes = answer.errors.map((error) => error.code ?? "<no code>");
    if (codes.includes("<no code>")) return "an error without extensions.code";
    if (codes.some((code) => code.startsWith("TEST_"))) return "no proper answer";
    if (codes.includes("INTERNAL_SERVER_ERROR")) return "INTERNAL_SERVER_ERROR";
    if (answer.status !== undefined && answer.status >= 500) return `HTTP ${answer.status}`;
    return undefined;
  }

  function judgeGraphQL(row: GraphQLRow, transport: Transport, answer: Answer): string | undefined {
    const common = commonProblems(row, answer);
    if (common) return common;
    if (answer.closed) {
      if (REFUSED_SOCKET.has(answer.closed.code) && row.caller === "anonymous") return undefined;
      return `the socket closed with ${answer.closed.code}`;
    }
    if (answer.live) return "a subscription that should have been refused is live";
    const isSubscription = /^\s*subscription\b/.test(row.query ?? "");
    const accepted = isSubscription && transport === "HTTP" ? REQUEST_CODES : row.expect;
    if (answer.errors.length === 0) {
      if (!accepted.includes(DATA)) return `served, where ${accepted.join("|")} was expected`;
      if (!answer.data) return "neither data nor an error";
      return row.checkData?.(answer.data);
    }
    const codes = answer.errors.map((error) => error.code!);
    const wrong = codes.filter((code) => !accepted.includes(code));
    if (wrong.length > 0) return `expected ${accepted.join("|")}`;
    if (row.field && codes.includes("BAD_USER_INPUT") && !answer.errors.some((error) => error.field && row.field!.test(error.field))) {
      return `a BAD_USER_INPUT not naming ${row.field}`;
    }
    return undefined;
  }

  function judgeHttp(row: HttpRow, answer: Answer): string | undefined {
    const common = commonProblems(row, answer);
    if (common) return common;
    const status = answer.status ?? 0;
    if (row.status ? !row.status.includes(status) : status < 400 || status > 499) return `HTTP ${status}`;
    if (answer.errors.length === 0) return row.expect.includes(DATA) ? undefined : "no error with a code";
    const wrong = answer.errors.filter((error) => !row.expect.includes(error.code!));
    return wrong.length > 0 ? `expected ${row.expect.join("|")}` : undefined;
  }

  function judgeWs(row: WsRow, answer: Answer): string | undefined {
    const common = commonProblems(row, answer);
    if (common) return common;
    if (answer.closed) return row.closeCodes?.includes(answer.closed.code) ? undefined : `closed with ${answer.closed.code}`;
    if (answer.errors.length > 0 && row.expect) {
      const wrong = answer.errors.filter((error) => !row.expect!.includes(error.code!));
      return wrong.length > 0 ? `expected ${row.expect.join("|")}` : undefined;
    }
    return `not refused (expected a close ${row.closeCodes?.join("|")})`;
  }

  async function attempt(row: Row, transport: Transport): Promise<void> {
    const token = row.caller === "anonymous" ? undefined : tokens[row.caller];
    let answer: Answer;
    let why: string | undefined;
    if (row.kind === "graphql") {
      const operation = {
        query: row.query,
        variables: row.variables,
        variablesJson: row.variablesJson,
        operationName: row.operationName,
        extensions: row.extensions,
      };
      if (transport === "HTTP") {
        answer = await httpRaw(server.url, operationJson(operation), {}, token);
      } else {
        const isSubscription = /^\s*subscription\b/.test(row.query);
        answer = await wsAsk(server.url, operation, token, isSubscription ? { subscription: { liveMs: 3_000 } } : {});
      }
      why = judgeGraphQL(row, transport, answer);
    } else if (row.kind === "http") {
      answer = await httpRaw(server.url, row.body, row.headers, token);
      why = judgeHttp(row, answer);
    } else {
      answer = await wsAsk(server.url, undefined, token, { rawFrames: row.frames, timeoutMs: 10_000 });
      why = judgeWs(row, answer);
    }
    if (transport === "HTTP") counts.http++;
    else counts.ws++;
    if (process.env.ATTACK_VERBOSE) console.log(`${why ? "FAIL" : "ok  "} [${transport}] ${row.name}: ${describeAnswer(answer)}`);
    if (why) failures.push(`[${transport}] ${row.name} (as ${row.caller}): ${why}; got ${describeAnswer(answer)}`);
  }

  it("has at least 200 rows", () => {
    expect(rows.length).toBeGreaterThanOrEqual(200);
    expect(new Set(rows.map((row) => row.name)).size, "row names are unique").toBe(rows.length);
  });

  it("answers every row over HTTP with a clear error, and nothing leaked", { timeout: 600_000 }, async () => {
    const before = failures.length;
    await mapLimited(
      rows.filter((row) => row.kind !== "ws"),
      4,
      (row) => attempt(row, "HTTP"),
    );
    counts.rows = rows.length;
    expect(failures.slice(before)).toEqual([]);
  });

  it("answers the rows that make sense over graphql-ws the same way", { timeout: 600_000 }, async () => {
    const before = failures.length;
    const overWs = rows.filter((row) => row.kind === "ws" || (row.kind === "graphql" && row.ws !== false));
    await mapLimited(overWs, 4, (row) => attempt(row, "WS"));
    expect(failures.slice(before)).toEqual([]);
  });

  it("is healthy after the whole table, and a normal query still works", async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    const me = await httpAsk(server.url, { query: "{ me { username } jobs { name } }" }, tokens.VIEWER);
    expect(me.errors).toEqual([]);
    expect(me.data?.me).toEqual({ username: "vanna-viewer" });
    const overWs = await wsAsk(server.url, { query: "{ me { username } }" }, tokens.ADMIN);
    expect(overWs.data).toEqual({ me: { username: "admin" } });
    for (const failure of failures) console.log(`  FAIL ${failure}`);
    console.log(
      `hostile-inputs: ${rows.length} rows; ${counts.http} requests over HTTP + ${counts.ws} over graphql-ws = ${counts.http + counts.ws} attempts, ${failures.length} failed`,
    );
  });
});
