/**
 * The database going away under a running Cairn, and coming back without a restart of Cairn.
 *
 * Embedded PostgreSQL: a backup is mid-transfer (the lab paces the export) when the postmaster is killed with -9 (its pid
 * from DATA_DIR/pg/postmaster.pid). The test then holds the database port for a while, so that the outage lasts whatever the
 * machine's speed, and the restarts Cairn attempts fail meanwhile (as they would on a port taken by another program). During
 * the outage a query answers UNAVAILABLE (not INTERNAL_SERVER_ERROR) and /healthz answers 503 saying why; once the port is
 * free Cairn starts PostgreSQL again by itself and /healthz answers 200; the run is INTERRUPTED with a message saying why,
 * what it left is gone (no restore point, no temporary file, no lock, no snapshot), and the next run of the job succeeds.
 *
 * DATABASE_URL: Cairn on a PostgreSQL server of this test, which is stopped and started again: the same answers during the
 * outage, and after it the API, /healthz and the event bus's LISTEN connection work again by themselves.
 *
 * No unhandled promise rejection may happen in either (a process-wide listener records them).
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres, type RunningPostgres } from "../../server/db/embedded-postgres.js";
import { EVENTS_CHANNEL } from "../../server/events/event-bus.js";
import { startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { eventually } from "../support/eventually.js";

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);

beforeAll(() => void process.on("unhandledRejection", onUnhandled));
afterAll(() => void process.off("unhandledRejection", onUnhandled));

function filesUnder(folder: string): string[] {
  if (!fs.existsSync(folder)) return [];
  return (fs.readdirSync(folder, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(folder, path.join(entry.parentPath, entry.name)))
    .sort();
}

function lockClaims(vmFolder: string): string[] {
  const dir = path.join(path.dirname(vmFolder), ".cairn-locks", path.basename(vmFolder));
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => name.endsWith(".json")) : [];
}

async function health(url: string): Promise<{ status: number; body: { status?: string; error?: string } }> {
  const response = await fetch(`${url}/healthz`);
  return { status: response.status, body: (await response.json()) as { status?: string; error?: string } };
}

/**
 * Listens on 127.0.0.1:`port` as soon as the port is free (the killed postmaster's socket closes with it), and closes every
 * connection it gets at once: clients see a server that refuses them, as when nothing listens.
 */
async function holdPort(port: number): Promise<net.Server> {
  return eventually(
    `port ${port} to be free to hold`,
    () =>
      new Promise<net.Server>((resolve, reject) => {
        const server = net.createServer((socket) => socket.destroy());
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve(server));
      }),
    { timeoutMs: 10_000, intervalMs: 1 },
  );
}

describe("the embedded PostgreSQL killed with -9 during a backup", () => {
  let fixture: BackupFixture;

  beforeAll(async () => {
    fixture = await startBackupFixture({ embeddedDatabase: true, labDiskMb: 64 });
  });
  afterAll(() => fixture?.stop());

  it("is restarted by Cairn; meanwhile the API answers UNAVAILABLE and /healthz says why; the cut run ends INTERRUPTED and cleaned", {
    timeout: 300_000,
  }, async () => {
    const { server } = fixture;
    const vm = fixture.vm("db-data");
    const job = await fixture.createJob({
      name: "cut by the database",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [fixture.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
    });
    const scheduleId = job.schedules[0].id;
    const vmFolder = path.join(fixture.remoteDir, "xo-vm-backups", vm.uuid);
    const filesBefore = filesUnder(vmFolder);

    await fixture.setFault("export_bytes_per_second", { rate: 256 * 1024 });
    const runId = await fixture.startRun(job.id, scheduleId);
    await fixture.waitForRun(runId, (run) =>
      run.tasks.some(
        (t: { kind: string; status: string; progress: number }) => t.kind === "transfer" && t.status === "RUNNING" && t.progress > 0,
      ),
    );
    expect(filesUnder(vmFolder).filter((name) => !filesBefore.includes(name)).length).toBeGreaterThan(0); // mid-transfer
    expect((await fixture.jobSnapshots(job.id)).length).toBe(1);

    const pgDir = path.join(server.dataDir, "pg");
    const [postmasterPid, , , port] = fs.readFileSync(path.join(pgDir, "postmaster.pid"), "utf8").split("\n");
    process.kill(Number(postmasterPid), "SIGKILL");
    const held = await holdPort(Number(port));
    let released = false;
    try {
      // The outage, as clients see it.
      const codes = new Set<string | undefined>();
      const query = await eventually("a query to answer UNAVAILABLE", async () => {
        const result = await server.graphql("{ jobs { id } }", {}, fixture.token);
        codes.add(result.errors?.[0]?.extensions?.code);
        expect(result.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
        return result;
      });
      expect(codes).not.toContain("INTERNAL_SERVER_ERROR");
      expect(query.errors![0].message).not.toMatch(/prisma|127\.0\.0\.1|SELECT|\.ts:/i);
      const during = await eventually("/healthz to say that PostgreSQL is being restarted", async () => {
        const answer = await health(server.url);
        expect(answer.status).toBe(503);
        expect(answer.body.error).toMatch(
          /^The embedded PostgreSQL stopped \(killed by SIGKILL\) and did not start again yet \(attempt \d+\); retrying in \d+ m?s\.$/,
        );
        return answer;
      });
      expect(during.body.status).toBe("unavailable");
      expect(server.logs.join("")).toContain("could not start the embedded PostgreSQL again; retrying");

      await new Promise<void>((resolve) => held.close(() => resolve()));
      released = true;
    } finally {
      if (!released) held.close();
    }

    // Back without a restart of Cairn.
    await eventually("/healthz to answer 200 again", async () => expect((await health(server.url)).status).toBe(200), {
      timeoutMs: 120_000,
      intervalMs: 200,
    });
    const newPid = Number(fs.readFileSync(path.join(pgDir, "postmaster.pid"), "utf8").split("\n")[0]);
    expect(newPid).not.toBe(Number(postmasterPid));

    const run = await eventually(
      "the cut run to be INTERRUPTED",
      async () => {
        const { run } = await fixture.gql<{ run: { status: string; error: string; tasks: { status: string }[] } }>(
          "query($id: ID!) { run(id: $id) { status error tasks { status } } }",
          { id: runId },
        );
        expect(run.status).toBe("INTERRUPTED");
        expect(run.tasks.filter((t) => t.status === "RUNNING")).toEqual([]); // the run's tasks end in the next statement
        return run;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    expect(run.error).toMatch(
      /^Cairn lost its database during the run \(last recorded at .+\); its temporary files and snapshots are cleaned/,
    );

    // Cleaned as after a crash: nothing of the run is left.
    await eventually("what the cut run left to be cleaned", async () => {
      expect(filesUnder(vmFolder)).toEqual(filesBefore);
      expect(lockClaims(vmFolder)).toEqual([]);
      expect(await fixture.jobSnapshots(job.id)).toEqual([]);
    });
    expect(await fixture.restorePoints(job.id)).toEqual([]);

    // The next run succeeds; its end arrives through the event bus, so LISTEN works again too.
    await fixture.clearFaults();
    const next = await fixture.runToEnd(job.id, scheduleId);
    expect(next.status, `${next.error}\n${JSON.stringify(next.tasks, null, 1)}`).toBe("SUCCESS");
    expect(await fixture.restorePoints(job.id)).toHaveLength(1);

    expect(unhandled).toEqual([]);
  });
});

describe("the PostgreSQL server at DATABASE_URL stopped and started again", () => {
  let postgres: RunningPostgres | undefined;
  let pgDir: string;
  let port: number;
  let server: TestCairn | undefined;
  const startPostgres = async () =>
    startEmbeddedPostgres({ dataDir: pgDir, port, password: "outage", settings: { fsync: "off", max_connections: "100" } });

  beforeAll(async () => {
    pgDir = fs.mkdtempSync(path.join(os.tmpdir(), "cairn-external-pg-"));
    fs.chmodSync(pgDir, 0o755);
    port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    postgres = await startPostgres();
    server = await startTestCairn({ env: { DATABASE_URL: postgres.connectionString("postgres") } });
  });
  const started = () => {
    if (!server) throw new Error("the server is not running");
    return server;
  };
  afterAll(async () => {
    await server?.stop();
    await postgres?.stop();
    fs.rmSync(pgDir, { recursive: true, force: true });
  });

  it("reconnects by itself: the API, /healthz and the event bus's LISTEN work again", { timeout: 180_000 }, async () => {
    const server = started();
    const token = await server.login();
    await postgres!.stop();
    postgres = undefined;

    const query = await eventually("a query to answer UNAVAILABLE", async () => {
      const result = await server.graphql("{ jobs { id } }", {}, token);
      expect(result.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
      return result;
    });
    expect(query.errors![0].message).not.toMatch(/prisma|127\.0\.0\.1|SELECT|\.ts:/i);
    await eventually(
      "/healthz to say that the database server does not answer",
      async () => {
        const answer = await health(server.url);
        expect(answer.status).toBe(503);
        expect(answer.body.error).toMatch(/The database server does not answer \(connection refused\); reconnecting/);
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );

    postgres = await startPostgres();
    await eventually("/healthz to answer 200 again", async () => expect((await health(server.url)).status).toBe(200), {
      timeoutMs: 120_000,
      intervalMs: 200,
    });
    const after = await server.graphql("{ jobs { id } }", {}, token);
    expect(after.errors).toBeUndefined();

    // An event published by another connection reaches this process's subscribers: its LISTEN connection is back.
    const controller = new AbortController();
    const events = server.cairn.services.events.subscribe(controller.signal);
    const client = new pg.Client({ connectionString: postgres.connectionString("postgres") });
    await client.connect();
    try {
      const event = { type: "run", runId: "00000000-0000-4000-8000-000000000001", jobId: null };
      const received = (async () => {
        for await (const got of events) if (got.runId === event.runId) return got;
        return undefined;
      })();
      // The listener reconnects with backoff of its own, maybe after /healthz is back.
      await eventually("the event listener to reconnect", () => expect(server.logs.join("")).toContain("event listener reconnected"), {
        timeoutMs: 60_000,
        intervalMs: 200,
      });
      await client.query("SELECT pg_notify($1, $2)", [EVENTS_CHANNEL, JSON.stringify(event)]);
      const hang = setTimeout(() => controller.abort(), 30_000); // only bounds a hang: the event arrives in milliseconds
      expect(await received).toEqual(event);
      clearTimeout(hang);
    } finally {
      controller.abort();
      await client.end();
    }
    expect(unhandled).toEqual([]);
  });

  it("stops cleanly while the database is away", { timeout: 120_000 }, async () => {
    const cairn = started();
    await postgres!.stop();
    postgres = undefined;
    await eventually("/healthz to answer 503", async () => expect((await health(cairn.url)).status).toBe(503), { timeoutMs: 60_000 });
    server = undefined; // stopped here, not by afterAll
    await cairn.stop();
    expect(cairn.logs.join("")).toContain("the database is unavailable");
    expect(unhandled).toEqual([]);
  });
});
