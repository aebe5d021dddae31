/**
 * The GraphQL-over-HTTP conformance audit of the `graphql-http` package against the live server's /graphql: no MUST may fail
 * (status "error"). Notices and warnings are logged with their ids (a stock Apollo 5 has 3 of each: GET is refused by CSRF
 * prevention, and parse/validation errors answer 400 where the spec prefers 200 with application/json).
 */
import { auditServer, type AuditResult } from "graphql-http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";

function summary(results: AuditResult[]) {
  const count = (status: AuditResult["status"]) => results.filter((result) => result.status === status).length;
  return { total: results.length, ok: count("ok"), notice: count("notice"), warn: count("warn"), error: count("error") };
}

function describeFailures(results: AuditResult[], status: AuditResult["status"]): string[] {
  return results.flatMap((result) =>
    result.status === status && "reason" in result ? [`${result.id} ${result.name}: ${result.reason}`] : [],
  );
}

describe("the GraphQL-over-HTTP audit (graphql-http)", () => {
  let server: TestCairn;
  let token: string;
  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
  });
  afterAll(() => server?.stop());

  it("passes every MUST without a token, but the two that introspect (introspection needs a sign-in)", async () => {
    const results = await auditServer({ url: `${server.url}/graphql` });
    const counts = summary(results);
    console.log(`graphql-http audit, anonymous: ${JSON.stringify(counts)}`);
    for (const line of [...describeFailures(results, "notice"), ...describeFailures(results, "warn")]) console.log(`  ${line}`);
    // BF61 and 28B9 send `{ __type(...) }`: refused to an anonymous caller (401 UNAUTHENTICATED); they pass with a token below.
    const introspecting = new Set(["BF61", "28B9"]);
    expect(describeFailures(results, "error").filter((line) => !introspecting.has(line.slice(0, 4)))).toEqual([]);
    expect(counts.total).toBeGreaterThan(50);
    expect(counts.ok).toBeGreaterThan(counts.total - 10);
  });

  it("passes every MUST with a bearer token", async () => {
    const withToken = (input: string | URL | Request, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    };
    const results = await auditServer({ url: `${server.url}/graphql`, fetchFn: withToken });
    const counts = summary(results);
    console.log(`graphql-http audit, signed in: ${JSON.stringify(counts)}`);
    expect(describeFailures(results, "error")).toEqual([]);
  });

  it("never answers the audit's malformed requests with a stack trace", async () => {
    const results = await auditServer({ url: `${server.url}/graphql` });
    for (const result of results) {
      if (result.status === "ok" || !("response" in result)) continue;
      const body = await result.response
        .clone()
        .text()
        .catch(() => "");
      expect(body, result.id).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
    }
  });
});
