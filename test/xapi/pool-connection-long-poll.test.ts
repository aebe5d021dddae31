import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../server/log.js";
import {
  DEFAULT_HTTP_INACTIVITY_MS,
  EVENT_FROM_CALL_TIMEOUT_MS,
  PoolConnection,
  type PoolConnectionOptions,
  type PoolStatus,
} from "../../server/xapi/pool-connection.js";
import { createLabFixture, type LabFixture } from "../lab/lab-fixture.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";

interface Watched {
  connection: PoolConnection;
  statuses: PoolStatus[];
  logs: { level: number; msg: string }[];
}

/**
 * The event watcher against a lab whose idle `event.from` is held near the client's HTTP limits: the same ratio as in
 * production (xen-api's 60.1 s long poll against Cairn's HTTP inactivity limit), shortened to milliseconds by options.
 */
describe("a pool connection's event long poll", () => {
  let fixture: LabFixture | undefined;
  let watched: Watched | undefined;
  afterEach(() =>
    stopAll(
      () => watched?.connection.close(),
      () => fixture?.dispose(),
    ),
  );

  async function connect(labOptions: Parameters<typeof createLabFixture>[0], options: PoolConnectionOptions): Promise<Watched> {
    fixture = await createLabFixture(labOptions);
    const logs: Watched["logs"] = [];
    const log = createLogger("debug", { write: (line: string) => void logs.push(JSON.parse(line)) });
    const { lab } = fixture;
    const connection = new PoolConnection(
      "pool-1",
      { name: "lab", url: lab.url, username: lab.user, password: lab.password, allowUnauthorized: true },
      log,
      options,
    );
    await connection.connectOnce();
    // Status changes after the connect (setStatus also re-emits an unchanged status, with a newer error).
    const statuses: PoolStatus[] = [];
    connection.on("status", (status: PoolStatus) => {
      if (statuses.at(-1) !== status && !(statuses.length === 0 && status === "CONNECTED")) statuses.push(status);
    });
    watched = { connection, statuses, logs };
    return watched;
  }

  it("in production, fits xen-api's long poll with a margin on every request", async () => {
    // The client's own source is the reference: a new xen-api with a longer long poll must fail here, not on an idle pool.
    const main = createRequire(import.meta.url).resolve("xen-api");
    const source = await readFile(join(dirname(main), "index.mjs"), "utf8");
    const seconds = Number(/const EVENT_TIMEOUT = (\d+)/.exec(source)?.[1]);
    expect(seconds).toBeGreaterThan(0);
    expect(source).toContain("EVENT_TIMEOUT * 1e3 * 1.1");
    expect(EVENT_FROM_CALL_TIMEOUT_MS).toBeGreaterThanOrEqual(seconds * 1000 * 1.1);
    // XAPI may answer a little after the asked timeout: the HTTP limit leaves far more than the long poll.
    expect(DEFAULT_HTTP_INACTIVITY_MS).toBeGreaterThanOrEqual(EVENT_FROM_CALL_TIMEOUT_MS + 30_000);
  });

  it("reproduces the drop: a long poll held past the HTTP limit ends in UND_ERR_HEADERS_TIMEOUT and, repeated, ERROR", async () => {
    const { connection } = await connect(
      { eventFromMaxWaitMs: 1_500 },
      { httpInactivityTimeoutMs: 600, eventPollDelayMs: 50, failuresBeforeError: 2 },
    );
    await eventually("the pool to fall to ERROR", () => connection.status === "ERROR", { timeoutMs: 30_000 });
    expect(connection.lastError).toContain("UND_ERR_HEADERS_TIMEOUT");
  });

  it("stays CONNECTED across many idle long polls held near the client's limit", async () => {
    const { connection, statuses, logs } = await connect({ eventFromMaxWaitMs: 600 }, { httpInactivityTimeoutMs: 1_000 });
    const events = fixture!.lab.pool.events;
    const before = events.idlePollsAnswered;
    await eventually("12 idle long polls to be served", () => events.idlePollsAnswered - before >= 12, {
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    expect(connection.status).toBe("CONNECTED");
    expect(statuses).toEqual([]);
    expect(logs.filter((line) => /failed/.test(line.msg))).toEqual([]);
  });

  it("retries a single failed event watch quietly, without leaving CONNECTED", async () => {
    // Both the client's next watch and the probe come after 1 s: the 0.2 s outage is over by then. Idle long polls are
    // short so that the next watch's success is seen soon.
    const { connection, statuses, logs } = await connect({ eventFromMaxWaitMs: 300 }, { eventPollDelayMs: 1_000 });
    const xapi = await fixture!.connect({ watchEvents: false });
    await xapi.call("lab.set_fault", "host_unreachable", { seconds: 0.2 }).catch(() => undefined); // its own answer may be cut
    await eventually("the watch to work again", () => logs.some((line) => line.msg === "pool event watch works again"), {
      timeoutMs: 30_000,
    });
    expect(logs.find((line) => line.msg === "pool event watch failed; retrying")?.level).toBe(30); // info
    expect(statuses).not.toContain("ERROR");
    expect(connection.status).toBe("CONNECTED");
  });

  it("reports ERROR once the pool stays unreachable, and CONNECTED when it is back", async () => {
    const { connection, statuses } = await connect({}, { eventPollDelayMs: 1_000 });
    const xapi = await fixture!.connect({ watchEvents: false });
    await xapi.call("lab.set_fault", "host_unreachable", { seconds: 3 }).catch(() => undefined);
    await eventually("the pool to fall to ERROR", () => connection.status === "ERROR", { timeoutMs: 30_000 });
    await eventually("the pool to be back", () => connection.status === "CONNECTED", { timeoutMs: 60_000 });
    expect(statuses).toEqual(["ERROR", "CONNECTED"]);
  });
});

describe("a pool connection's API version check", () => {
  let fixture: LabFixture | undefined;
  let connection: PoolConnection | undefined;
  afterEach(() =>
    stopAll(
      () => connection?.close(),
      () => fixture?.dispose(),
    ),
  );

  async function connectTo(apiVersion?: { major: number; minor: number }): Promise<PoolConnection> {
    fixture = await createLabFixture(apiVersion ? { apiVersion } : {});
    const { lab } = fixture;
    connection = new PoolConnection(
      "pool-1",
      { name: "lab", url: lab.url, username: lab.user, password: lab.password, allowUnauthorized: true },
      createLogger("silent"),
    );
    await connection.connectOnce();
    return connection;
  }

  it("has no warning for a current pool", async () => {
    const current = await connectTo();
    expect(current.apiVersion).toEqual({ major: 2, minor: 21 });
    expect(current.warning).toBeUndefined();
  });

  it("says what will not work on an older pool master", async () => {
    const old = await connectTo({ major: 2, minor: 2 });
    expect(old.apiVersion).toEqual({ major: 2, minor: 2 });
    expect(old.warning).toContain("XAPI 2.2");
    expect(old.warning).toContain("delta backups and continuous replication");
    expect(old.warning).not.toContain("event.from");
    expect(old.status).toBe("CONNECTED");
  });
});
