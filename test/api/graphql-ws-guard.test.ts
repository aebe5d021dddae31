/**
 * The socket guard on its own, with an authenticate function the test controls: what a sweep costs (one check per distinct
 * credential, whatever the number of sockets), which close code each verdict gets (4401 dead, 4403 narrowed below what a
 * subscription needs), that a database failure closes nothing, and that it stops. The real server's behaviour is in
 * graphql-ws-credentials.test.ts; the 4403 path needs a subscription that a lower role may not hold, which today's schema
 * does not have (every subscription is VIEWER's), hence this test.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { Principal } from "../../server/domain/principal.js";
import { CairnError, ErrorCode } from "../../server/errors.js";
import { SocketGuard, closeReason, type GuardedConnection } from "../../server/http/socket-guard.js";
import { createLogger } from "../../server/log.js";
import { eventually } from "../support/eventually.js";

const HOUR_MS = 3_600_000;

function principal(tokenId: string, role: Principal["role"] = "ADMIN"): Principal {
  return { userId: `user-of-${tokenId}`, username: "someone", role, tokenId, tokenKind: "API" };
}

class FakeSocket implements GuardedConnection {
  closed: { code: number; reason: string } | undefined;
  allowedChecks = 0;
  constructor(
    readonly authorization: string,
    public principal: Principal,
    private readonly allowed = true,
  ) {}
  close(code: number, reason: string) {
    this.closed = { code, reason };
  }
  async stillAllowed() {
    this.allowedChecks++;
    return this.allowed;
  }
}

describe("socket guard", () => {
  const logs: string[] = [];
  const log = createLogger(
    "warn",
    new Writable({
      write(chunk, _encoding, callback) {
        logs.push(String(chunk));
        callback();
      },
    }),
  );
  const guards: SocketGuard[] = [];
  const guard = (authenticate: (authorization: string) => Promise<Principal | undefined>, intervalMs = HOUR_MS, debounceMs = HOUR_MS) => {
    const made = new SocketGuard({ authenticate, log, intervalMs, debounceMs });
    guards.push(made);
    return made;
  };
  afterEach(async () => {
    await Promise.all(guards.splice(0).map((g) => g.stop()));
  });

  it("checks each distinct credential once per sweep, however many sockets share it", async () => {
    const calls: string[] = [];
    const g = guard(async (authorization) => {
      calls.push(authorization);
      return principal(authorization);
    });
    const sockets = Array.from({ length: 300 }, (_, i) => new FakeSocket(`token-${i % 3}`, principal(`token-${i % 3}`)));
    for (const socket of sockets) g.add(socket);
    await g.checkNow();
    expect(calls.sort()).toEqual(["token-0", "token-1", "token-2"]);
    expect(sockets.every((socket) => !socket.closed)).toBe(true);
  });

  it("closes every socket of a dead credential with 4401 and the reason, and leaves the others", async () => {
    const g = guard(async (authorization) => {
      if (authorization === "dead")
        throw new CairnError(ErrorCode.Unauthenticated, "This token was revoked. Sign in again or use another token.");
      return principal(authorization);
    });
    const dead = [new FakeSocket("dead", principal("dead")), new FakeSocket("dead", principal("dead"))];
    const alive = new FakeSocket("alive", principal("alive"));
    for (const socket of [...dead, alive]) g.add(socket);
    await g.checkNow();
    for (const socket of dead) {
      expect(socket.closed).toEqual({ code: 4401, reason: "Unauthenticated: This token was revoked. Sign in again or use another token." });
    }
    expect(alive.closed).toBeUndefined();
    expect(g.size).toBe(1);
  });

  it("closes nothing when the credential cannot be checked (the database is away), and says so in the log", async () => {
    const g = guard(async () => {
      throw new Error("connect ECONNREFUSED");
    });
    const socket = new FakeSocket("any", principal("any"));
    g.add(socket);
    await g.checkNow();
    expect(socket.closed).toBeUndefined();
    expect(g.size).toBe(1);
    expect(logs.some((line) => line.includes("could not re-check the credentials of open sockets"))).toBe(true);
  });

  it("closes with 4403 a socket whose role went down below what its subscriptions need; keeps the others with the new role", async () => {
    const g = guard(async (authorization) => principal(authorization, "VIEWER"));
    const refused = new FakeSocket("a", principal("a", "ADMIN"), false);
    const allowed = new FakeSocket("b", principal("b", "OPERATOR"), true);
    const unchanged = new FakeSocket("c", principal("c", "VIEWER"), false);
    for (const socket of [refused, allowed, unchanged]) g.add(socket);
    await g.checkNow();
    expect(refused.closed).toEqual({ code: 4403, reason: "Forbidden: your role is now VIEWER; subscribe again." });
    expect(allowed.closed).toBeUndefined();
    expect(allowed.principal.role).toBe("VIEWER");
    expect(unchanged.closed).toBeUndefined();
    expect(unchanged.allowedChecks).toBe(0);
  });

  it("sweeps once for a burst of credential changes, and by itself every interval", async () => {
    let calls = 0;
    const burst = guard(async (authorization) => (calls++, principal(authorization)), HOUR_MS, 10);
    burst.add(new FakeSocket("t", principal("t")));
    for (let i = 0; i < 20; i++) burst.credentialsChanged();
    await eventually("the debounced sweep", () => calls === 1);

    let ticks = 0;
    const periodic = guard(async (authorization) => (ticks++, principal(authorization)), 20);
    periodic.add(new FakeSocket("t", principal("t")));
    await eventually("two periodic sweeps", () => ticks >= 2);
  });

  it("stops: waits for the sweep under way, then checks nothing more", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const g = guard(async (authorization) => {
      calls++;
      await gate;
      return principal(authorization);
    });
    g.add(new FakeSocket("t", principal("t")));
    const sweep = g.checkNow();
    await eventually("the sweep to start", () => calls === 1);
    let stopped = false;
    const stopping = g.stop().then(() => (stopped = true));
    await Promise.resolve();
    expect(stopped).toBe(false);
    release();
    await Promise.all([sweep, stopping]);
    await g.checkNow();
    g.credentialsChanged();
    expect(calls).toBe(1);
    expect(g.size).toBe(0);
  });

  it("cuts a close reason to the 123 bytes a WebSocket close frame allows, on a character boundary", () => {
    const reason = closeReason(`Unauthenticated: ${"é".repeat(200)}`);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason.endsWith("…")).toBe(true);
    expect(closeReason("short")).toBe("short");
  });
});
