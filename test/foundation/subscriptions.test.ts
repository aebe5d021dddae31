/**
 * The runUpdated / taskUpdated subscriptions over a real websocket (graphql-ws on /graphql), authenticated with the bearer
 * token in connectionParams, fed by the event bus (Postgres LISTEN/NOTIFY).
 *
 * graphql-ws sets a subscription up asynchronously and says nothing when it is active, so each test first publishes a harmless
 * event repeatedly (bounded) until the first one arrives: from then on the subscription is live, with no sleep to guess.
 */
import { randomUUID } from "node:crypto";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import * as queue from "../support/subscription-queue.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import type { CairnEvent } from "../../server/events/event-bus.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

const WAIT_MS = 10_000;
const subscribe = <T>(client: Client, query: string, variables: Record<string, unknown>) =>
  queue.subscribe<T>(client, query, variables, WAIT_MS);
const untilActive = <T>(subscription: queue.Subscription<T>, publish: () => Promise<void>) =>
  queue.untilActive(subscription, publish, WAIT_MS);

describe("subscriptions over graphql-ws", () => {
  let server: TestCairn;
  let db: Db;
  let token: string;
  let wsUrl: string;
  const clients: Client[] = [];

  const connect = (connectionParams?: Record<string, unknown>, on?: Parameters<typeof createClient>[0]["on"]) => {
    const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams, retryAttempts: 0, on });
    clients.push(client);
    return client;
  };
  const publish = (event: CairnEvent) => server.cairn.services.events.publish(event);
  const insertJob = () =>
    db.job.create({
      data: { name: `job-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
  const insertPendingRun = (jobId: string) => db.run.create({ data: { jobId, trigger: "MANUAL", status: "PENDING" } });

  beforeAll(async () => {
    server = await startTestCairn();
    db = createPrismaClient(server.database.url);
    token = await server.login();
    wsUrl = `${server.url.replace(/^http/, "ws")}/graphql`;
  });
  afterAll(() =>
    stopAll(
      () => Promise.all(clients.map((client) => client.dispose())),
      () => db?.$disconnect(),
      () => server?.stop(),
    ),
  );

  it("runUpdated delivers a run cancelled over HTTP, as a CANCELLED run", async () => {
    const job = await insertJob();
    const run = await insertPendingRun(job.id);
    const client = connect({ authorization: `Bearer ${token}` });
    const updates = subscribe<{ id: string; status: string; error: string | null; job: { id: string } }>(
      client,
      "subscription($jobId: ID) { runUpdated(jobId: $jobId) { id status error job { id } } }",
      { jobId: job.id },
    );
    const first = await untilActive(updates, () => publish({ type: "run", runId: run.id, jobId: job.id }));
    expect(first).toMatchObject({ id: run.id, status: "PENDING", job: { id: job.id } });

    const cancelled = await server.graphql<{ cancelRun: { status: string } }>(
      "mutation($id: ID!) { cancelRun(id: $id) { status } }",
      { id: run.id },
      token,
    );
    expect(cancelled.errors).toBeUndefined();
    expect(cancelled.data?.cancelRun.status).toBe("CANCELLED");

    // Warm-up events may still be queued behind the one cancelRun published: wait for the one that shows the change.
    let update = await updates.next();
    while (update.status === "PENDING") update = await updates.next();
    expect(update).toEqual({ id: run.id, status: "CANCELLED", error: "Cancelled before it started.", job: { id: job.id } });
    updates.dispose();
  });

  it("runUpdated(jobId) leaves out the runs of other jobs; without jobId it has every run", async () => {
    const [jobA, jobB] = await Promise.all([insertJob(), insertJob()]);
    const [runA, runB] = await Promise.all([insertPendingRun(jobA.id), insertPendingRun(jobB.id)]);
    const client = connect({ authorization: `Bearer ${token}` });
    type Seen = { id: string; emittedAt: string | null };
    const onlyA = subscribe<Seen>(client, "subscription($j: ID) { runUpdated(jobId: $j) { id emittedAt } }", { j: jobA.id });
    const all = subscribe<Seen>(client, "subscription { runUpdated { id emittedAt } }", {});
    await untilActive(onlyA, () => publish({ type: "run", runId: runA.id, jobId: jobA.id }));
    await untilActive(all, () => publish({ type: "run", runId: runA.id, jobId: jobA.id }));

    // A marker after B's event: the bus delivers in order, so B, had it passed the filter, would arrive before the marker.
    // The current state each subscription starts with (emittedAt null) and runA's own events are skipped.
    const marker = await insertPendingRun(jobA.id);
    await publish({ type: "run", runId: runB.id, jobId: jobB.id });
    await publish({ type: "run", runId: marker.id, jobId: jobA.id });
    const skipped = (event: Seen) => event.id === runA.id || event.emittedAt === null;
    let seen = await onlyA.next();
    while (skipped(seen)) seen = await onlyA.next();
    expect(seen.id).toBe(marker.id);

    let any = await all.next();
    while (skipped(any)) any = await all.next();
    expect(any.id).toBe(runB.id);
    expect((await all.next()).id).toBe(marker.id);
    onlyA.dispose();
    all.dispose();
  });

  it("taskUpdated(runId) delivers a task event published on the bus, and only that run's", async () => {
    const job = await insertJob();
    const [run, otherRun] = await Promise.all([insertPendingRun(job.id), insertPendingRun(job.id)]);
    const task = await db.task.create({
      data: { runId: run.id, position: 0, kind: "vm", name: "VM web-1", status: "RUNNING", progress: 0.25, warnings: [] },
    });
    const otherTask = await db.task.create({
      data: { runId: otherRun.id, position: 0, kind: "vm", name: "other", warnings: [] },
    });
    const client = connect({ authorization: `Bearer ${token}` });
    const updates = subscribe<{ id: string; runId: string; name: string; status: string; progress: number }>(
      client,
      "subscription($runId: ID!) { taskUpdated(runId: $runId) { id runId name status progress } }",
      { runId: run.id },
    );
    const first = await untilActive(updates, () => publish({ type: "task", runId: run.id, taskId: task.id }));
    expect(first).toEqual({ id: task.id, runId: run.id, name: "VM web-1", status: "RUNNING", progress: 0.25 });

    await db.task.update({ where: { id: task.id }, data: { status: "SUCCESS", progress: 1, endedAt: new Date() } });
    await publish({ type: "task", runId: otherRun.id, taskId: otherTask.id });
    await publish({ type: "task", runId: run.id, taskId: task.id });
    let update = await updates.next();
    while (update.status === "RUNNING") update = await updates.next();
    expect(update).toEqual({ id: task.id, runId: run.id, name: "VM web-1", status: "SUCCESS", progress: 1 });
    updates.dispose();
  });

  it("taskUpdated starts with the run's task tree as it is now, so a page opened mid-run is complete", async () => {
    const job = await insertJob();
    const run = await insertPendingRun(job.id);
    const tasks = [];
    for (const [position, name] of ["VM web-1", "snapshot", "transfer to nas"].entries()) {
      tasks.push(
        await db.task.create({
          data: { runId: run.id, position, kind: "vm", name, status: position === 0 ? "SUCCESS" : "RUNNING", progress: 0.5, warnings: [] },
        }),
      );
    }
    const client = connect({ authorization: `Bearer ${token}` });
    type Seen = { id: string; name: string; emittedAt: string | null };
    const updates = subscribe<Seen>(client, "subscription($r: ID!) { taskUpdated(runId: $r) { id name emittedAt } }", { r: run.id });
    // Nothing published: the tree comes on its own, in order, as the current state (no emission time).
    for (const task of tasks) await expect(updates.next()).resolves.toEqual({ id: task.id, name: task.name, emittedAt: null });
    await publish({ type: "task", runId: run.id, taskId: tasks[2].id });
    const change = await updates.next();
    expect(change).toMatchObject({ id: tasks[2].id });
    expect(change.emittedAt).not.toBeNull();
    updates.dispose();
  });

  it("taskUpdated gives each of many subscribers opening one run at once the whole tree, then every change", async () => {
    const job = await insertJob();
    const run = await insertPendingRun(job.id);
    const tasks = [];
    for (const [position, name] of ["VM web-1", "snapshot", "export"].entries()) {
      tasks.push(await db.task.create({ data: { runId: run.id, position, kind: "vm", name, status: "RUNNING", warnings: [] } }));
    }
    // Connected first, then all subscribing together: their tree is read once for them all (run-service.ts), and each
    // still gets all of it, then the change.
    const many = Array.from({ length: 12 }, () => connect({ authorization: `Bearer ${token}` }));
    const query = "subscription($r: ID!) { taskUpdated(runId: $r) { id name status } }";
    const subscriptions = many.map((client) => subscribe<{ id: string; name: string; status: string }>(client, query, { r: run.id }));
    for (const updates of subscriptions) {
      for (const task of tasks) await expect(updates.next()).resolves.toEqual({ id: task.id, name: task.name, status: "RUNNING" });
    }
    await db.task.update({ where: { id: tasks[1].id }, data: { status: "SUCCESS", progress: 1, endedAt: new Date() } });
    await publish({ type: "task", runId: run.id, taskId: tasks[1].id });
    for (const updates of subscriptions) {
      await expect(updates.next()).resolves.toEqual({ id: tasks[1].id, name: "snapshot", status: "SUCCESS" });
      updates.dispose();
    }
  });

  it("taskUpdated of a run that does not exist is NOT_FOUND, naming it", async () => {
    const client = connect({ authorization: `Bearer ${token}` });
    const missing = randomUUID();
    const updates = subscribe(client, "subscription($r: ID!) { taskUpdated(runId: $r) { id } }", { r: missing });
    const error = await updates.next().then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(String(error)).toContain(`"message":"No run with id ${missing}."`);
    expect(String(error)).toContain('"code":"NOT_FOUND"');
  });

  it("runUpdated(jobId) starts with the job's run in progress, or its last run once that ended", async () => {
    const job = await insertJob();
    const ended = await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "SUCCESS", endedAt: new Date() } });
    const client = connect({ authorization: `Bearer ${token}` });
    type Seen = { id: string; status: string; emittedAt: string | null };
    const query = "subscription($j: ID) { runUpdated(jobId: $j) { id status emittedAt } }";
    const afterEnd = subscribe<Seen>(client, query, { j: job.id });
    await expect(afterEnd.next()).resolves.toEqual({ id: ended.id, status: "SUCCESS", emittedAt: null });
    afterEnd.dispose();
    const going = await insertPendingRun(job.id);
    const midRun = subscribe<Seen>(client, query, { j: job.id });
    await expect(midRun.next()).resolves.toEqual({ id: going.id, status: "PENDING", emittedAt: null });
    midRun.dispose();
  });

  /** Connects, subscribes, and returns how the connection ended (it must end, with no event). */
  async function refusedWith(connectionParams?: Record<string, unknown>) {
    let connected = false;
    const closed = new Promise<{ code: number; reason: string }>((resolve) => {
      const client = connect(connectionParams, {
        connected: () => (connected = true),
        closed: (event) => {
          const { code, reason } = event as { code: number; reason: string };
          resolve({ code, reason });
        },
      });
      client.subscribe(
        { query: "subscription { runUpdated { id } }" },
        { next: () => undefined, error: () => undefined, complete: () => undefined },
      );
    });
    const event = await closed;
    return { ...event, connected };
  }

  it("refuses a connection without a token with 4401, saying what to send", async () => {
    const refused = await refusedWith(undefined);
    expect(refused).toMatchObject({ code: 4401, connected: false });
    expect(refused.reason).toMatch(/^Unauthenticated: .*Bearer <token>/);
  });

  it("refuses a connection with an unknown token or a malformed header", async () => {
    const unknown = await refusedWith({ authorization: `Bearer ${"x".repeat(token.length)}` });
    expect(unknown).toMatchObject({ code: 4401, connected: false });
    const wrongToken = await refusedWith({ authorization: `Bearer ${token.slice(0, -2)}zz` });
    expect(wrongToken).toMatchObject({ code: 4401, connected: false, reason: "Unauthenticated: This token is not valid. Sign in again." });
    const malformed = await refusedWith({ authorization: token });
    expect(malformed).toMatchObject({ code: 4401, connected: false });
  });

  it("refuses a signed-out session, and still accepts the user's other session", async () => {
    const session = await server.login();
    const loggedOut = await server.graphql<{ logout: boolean }>("mutation { logout }", {}, session);
    expect(loggedOut.data?.logout).toBe(true);
    expect(await refusedWith({ authorization: `Bearer ${session}` })).toMatchObject({ code: 4401, connected: false });
    // The admin's other token still works: the refusal was about that session only.
    const client = connect({ authorization: `Bearer ${token}` });
    const job = await insertJob();
    const run = await insertPendingRun(job.id);
    const updates = subscribe<{ id: string }>(client, "subscription($j: ID) { runUpdated(jobId: $j) { id } }", { j: job.id });
    expect((await untilActive(updates, () => publish({ type: "run", runId: run.id, jobId: job.id }))).id).toBe(run.id);
    updates.dispose();
  });
});
