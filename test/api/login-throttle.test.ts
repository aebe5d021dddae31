/**
 * Finding 7 of issue 10: 400 wrong passwords in 20 s were all answered. Sign-in is now throttled per user name and per client
 * address, with a delay that doubles and is capped, refused attempts never reach the password check, and an attacker cannot
 * lock the real admin out. Requests come from distinct loopback addresses (127.0.0.x) so that "another address" is real.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import { createLogger } from "../../server/log.js";
import { CairnError, ErrorCode } from "../../server/errors.js";
import { AuthService } from "../../server/services/auth-service.js";
import { LoginThrottle } from "../../server/services/login-throttle.js";
import { ADMIN_PASSWORD, createUser, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { manualClock } from "../support/manual-clock.js";
import { stopAll } from "../support/stop-all.js";
import { expectData, openDatabase } from "./api-assertions.js";

const LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }";

interface Answer {
  data?: any;
  errors?: { message: string; extensions?: { code?: string; retryAfterSeconds?: number } }[];
}

/** A GraphQL POST sent from a chosen local address (any 127.0.0.x reaches a server listening on 127.0.0.1). */
function postFrom(server: TestCairn, localAddress: string, query: string, variables: Record<string, unknown>, token?: string) {
  const url = new URL(`${server.url}/graphql`);
  const body = JSON.stringify({ query, variables });
  return new Promise<Answer>((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        localAddress,
        agent: false,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Answer);
          } catch (error) {
            reject(error);
          }
        });
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

const codeOf = (answer: Answer) => answer.errors?.[0]?.extensions?.code ?? (answer.data ? "OK" : "NONE");

describe("sign-in throttling over HTTP", () => {
  let server: TestCairn;

  beforeAll(async () => {
    server = await startTestCairn();
    await createUser(server, "vera-viewer", "VIEWER", "vera-viewer-password");
    await createUser(server, "paula-password", "VIEWER", "paula-password-1");
  });
  afterAll(() => stopAll(() => server?.stop()));

  it("answers 400 fast wrong passwords for admin almost all RATE_LIMITED, and keeps the real admin and other users signing in", async () => {
    // The real admin signed in from 127.0.0.4 before the attack: that address stays open to it.
    expect(codeOf(await postFrom(server, "127.0.0.4", LOGIN, { u: "admin", p: ADMIN_PASSWORD }))).toBe("OK");

    const answers: Answer[] = [];
    for (let i = 0; i < 400; i++) answers.push(await postFrom(server, "127.0.0.1", LOGIN, { u: "admin", p: `wrong-guess-${i}` }));
    const codes = answers.map(codeOf);
    const limited = answers.filter((a) => codeOf(a) === "RATE_LIMITED");
    const checked = codes.filter((c) => c === "UNAUTHENTICATED").length;
    // 5 failures checked, then one more each time a delay (1 s, 2 s, 4 s...) runs out while the loop goes on.
    expect(codes.slice(0, 5)).toEqual(Array(5).fill("UNAUTHENTICATED"));
    expect(checked, `checked ${checked} of 400`).toBeLessThanOrEqual(20);
    expect(limited.length + checked).toBe(400);
    for (const answer of limited) {
      const [error] = answer.errors!;
      expect(error.message).toMatch(/^Too many failed sign-ins for this user name; try again in \d+ seconds?\.$/);
      expect(error.extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(error.extensions?.retryAfterSeconds).toBeLessThanOrEqual(15 * 60);
      expect(JSON.stringify(error)).not.toMatch(/wrong-guess|stack|at .*\.ts/);
    }

    // Another user name from another address: untouched, both for a right and a wrong password.
    expect(codeOf(await postFrom(server, "127.0.0.2", LOGIN, { u: "vera-viewer", p: "vera-viewer-password" }))).toBe("OK");
    expect(codeOf(await postFrom(server, "127.0.0.2", LOGIN, { u: "vera-viewer", p: "not-it-at-all" }))).toBe("UNAUTHENTICATED");
    // The attacker's address has spent few failures (refused attempts are not checked, so not counted): other names pass.
    expect(codeOf(await postFrom(server, "127.0.0.1", LOGIN, { u: "vera-viewer", p: "vera-viewer-password" }))).toBe("OK");
    // The real admin, from where it signed in before, is not locked out by the attack.
    expect(codeOf(await postFrom(server, "127.0.0.4", LOGIN, { u: "admin", p: ADMIN_PASSWORD }))).toBe("OK");
  });

  it("throttles one address spraying many user names, and leaves other addresses alone", async () => {
    const answers: Answer[] = [];
    for (let i = 0; i < 30; i++) answers.push(await postFrom(server, "127.0.0.5", LOGIN, { u: `sprayed-${i}`, p: "password-guess" }));
    const codes = answers.map(codeOf);
    expect(codes.slice(0, 20)).toEqual(Array(20).fill("UNAUTHENTICATED"));
    // The first delay is 1 s and doubles: on a slow machine one or two of the ten may come after a delay ran out.
    expect(codes.filter((c) => c === "RATE_LIMITED").length).toBeGreaterThanOrEqual(5);
    const limited = answers.find((a) => codeOf(a) === "RATE_LIMITED")!;
    expect(limited.errors![0].message).toMatch(/^Too many failed sign-ins from this address; try again in \d+ seconds?\.$/);
    expect(codeOf(await postFrom(server, "127.0.0.6", LOGIN, { u: "sprayed-3", p: "password-guess" }))).toBe("UNAUTHENTICATED");
    expect(codeOf(await postFrom(server, "127.0.0.6", LOGIN, { u: "vera-viewer", p: "vera-viewer-password" }))).toBe("OK");
  });

  it("throttles guesses of the current password in changePassword like sign-in", async () => {
    const session = expectData(await server.graphql(LOGIN, { u: "paula-password", p: "paula-password-1" })).login.token as string;
    const change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
    const codes: string[] = [];
    for (let i = 0; i < 12; i++) {
      codes.push(codeOf(await postFrom(server, "127.0.0.7", change, { c: `guess-${i}-wrong`, n: "a-new-password-2" }, session)));
    }
    expect(codes.slice(0, 5)).toEqual(Array(5).fill("BAD_USER_INPUT"));
    expect(codes.filter((c) => c === "RATE_LIMITED").length).toBeGreaterThanOrEqual(1);
    expect(codes.filter((c) => c !== "RATE_LIMITED" && c !== "BAD_USER_INPUT")).toEqual([]);
    // The session itself was not harmed.
    expectData(await server.graphql("{ me { username } }", {}, session));
  });
});

describe("sign-in throttling against a manual clock", () => {
  let server: TestCairn;
  let db: Db;
  const clock = manualClock(Date.parse("2030-01-01T00:00:00Z"));
  let auth: AuthService;

  beforeAll(async () => {
    server = await startTestCairn();
    db = openDatabase(server);
    // The real service on the server's database; only its clock is injected, so that waiting out a delay takes no time.
    auth = new AuthService(db, createLogger("silent"), { sessionHours: 1, clock });
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  const attempt = async (password: string, address = "192.0.2.10") => {
    try {
      await auth.login("admin", password, address);
      return { code: "OK" as const, retryAfterSeconds: 0 };
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      return { code: error.code, retryAfterSeconds: Number(error.details.retryAfterSeconds ?? 0), message: error.message };
    }
  };

  it("refuses 400 fast guesses, then lets the right password in once the delay has passed, and never delays more than 15 minutes", async () => {
    const results = [];
    for (let i = 0; i < 400; i++) results.push(await attempt(`wrong-${i}`));
    expect(results.filter((r) => r.code === ErrorCode.Unauthenticated)).toHaveLength(5);
    expect(results.filter((r) => r.code === ErrorCode.RateLimited)).toHaveLength(395);
    expect(results[5].retryAfterSeconds).toBe(1);

    expect((await attempt(ADMIN_PASSWORD)).code).toBe(ErrorCode.RateLimited);
    await clock.advance(1000);
    expect((await attempt(ADMIN_PASSWORD)).code).toBe("OK");

    // Guessing on and on, each time from a new address: each delay doubles up to the cap, and never more.
    const delays: number[] = [];
    for (let i = 0; delays.length < 14 && i < 100; i++) {
      const result = await attempt(`again-${i}`, `198.51.100.${i}`);
      if (result.code === ErrorCode.RateLimited) {
        delays.push(result.retryAfterSeconds);
        await clock.advance(result.retryAfterSeconds * 1000);
      } else {
        expect(result.code).toBe(ErrorCode.Unauthenticated);
      }
    }
    expect(delays.slice(0, 6)).toEqual([1, 2, 4, 8, 16, 32]);
    expect(Math.max(...delays)).toBe(15 * 60);
    expect((await attempt(ADMIN_PASSWORD, "198.51.100.200")).code).toBe("OK");
  });

  it("throttles guesses of the current password in changePassword under the user name, as sign-in", async () => {
    const { token } = await auth.login("admin", ADMIN_PASSWORD, "192.0.2.30");
    const principal = (await auth.authenticate(`Bearer ${token}`))!;
    const change = async (current: string) => {
      try {
        return await auth.users.changePassword(principal, current, "never-set-password", "192.0.2.31");
      } catch (error) {
        return (error as CairnError).code;
      }
    };
    for (let i = 0; i < 5; i++) expect(await change(`not-current-${i}`)).toBe(ErrorCode.BadInput);
    expect(await change(ADMIN_PASSWORD)).toBe(ErrorCode.RateLimited);
    expect((await attempt(ADMIN_PASSWORD, "192.0.2.32")).code).toBe(ErrorCode.RateLimited);
    await clock.advance(1000);
    expect((await attempt(ADMIN_PASSWORD, "192.0.2.32")).code).toBe("OK");
  });

  it("forgets failures after a quiet time, and throttles another address apart", async () => {
    for (let i = 0; i < 5; i++) await attempt(`quiet-${i}`, "192.0.2.20");
    expect((await attempt("quiet-x", "192.0.2.20")).code).toBe(ErrorCode.RateLimited);
    await clock.advance(16 * 60_000);
    expect((await attempt("quiet-y", "192.0.2.20")).code).toBe(ErrorCode.Unauthenticated);
    expect((await attempt(ADMIN_PASSWORD, "192.0.2.20")).code).toBe("OK");
  });
});

describe("LoginThrottle", () => {
  it("keeps the name's own owner out of an attacker's reach from an address it signed in from, and not the attacker", () => {
    const clock = manualClock(0);
    const throttle = new LoginThrottle({ clock });
    throttle.succeeded("admin", "10.0.0.1");
    for (let i = 0; i < 10; i++) throttle.failed("admin", "203.0.113.9");
    expect(() => throttle.check("admin", "203.0.113.9")).toThrow(/for this user name/);
    expect(() => throttle.check("admin", "10.0.0.2")).toThrow(/for this user name/);
    expect(() => throttle.check("admin", "10.0.0.1")).not.toThrow();
    // Name matching ignores case, as user names are unique without regard to case.
    expect(() => throttle.check("ADMIN", "10.0.0.3")).toThrow(/for this user name/);
  });

  it("does not let another account's success at the same address reset the guesses against a trusted name", () => {
    const clock = manualClock(0);
    const throttle = new LoginThrottle({ clock });
    throttle.succeeded("admin", "10.0.0.1");
    for (let i = 0; i < 6; i++) throttle.failed("admin", "10.0.0.1");
    throttle.succeeded("mallory", "10.0.0.1");
    expect(() => throttle.check("admin", "10.0.0.1")).toThrow(/for this user name/);
  });

  it("keeps its memory bounded when names are sprayed", () => {
    const throttle = new LoginThrottle({ clock: manualClock(0), maxEntries: 100, freeFailuresPerAddress: 1_000_000 });
    for (let i = 0; i < 5000; i++) throttle.failed(`name-${i}`, "198.51.100.1");
    const sizes = throttle as unknown as { names: Map<string, unknown>; pairs: Map<string, unknown> };
    expect(sizes.names.size).toBeLessThanOrEqual(100);
    expect(sizes.pairs.size).toBeLessThanOrEqual(100);
  });
});
