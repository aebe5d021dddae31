/**
 * What a graphql-ws client sees of a backup while it runs: runUpdated(jobId) and taskUpdated(runId) over a real websocket,
 * during a slowed export. Progress and bytes rise (never go down, several distinct values, the run's too although it has
 * one VM), and the last event of the run and of each task carries its final status.
 */
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import * as queue from "../support/subscription-queue.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";

const WAIT_MS = 15_000;
const subscribe = <T>(client: Client, query: string, variables: Record<string, unknown>) =>
  queue.subscribe<T>(client, query, variables, WAIT_MS);
const untilActive = <T>(subscription: queue.Subscription<T>, publish: () => Promise<void>) =>
  queue.untilActive(subscription, publish, WAIT_MS);
const FINAL = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

function nonDecreasing(values: number[]): boolean {
  return values.every((value, i) => i === 0 || value >= values[i - 1]);
}

interface RunEvent {
  id: string;
  status: string;
  progress: number;
  transferredBytes: number;
}
interface TaskEvent {
  id: string;
  kind: string;
  status: string;
  progress: number;
  sizeBytes: number | null;
  bytesPerSecond?: number | null;
  etaSeconds?: number | null;
}

describe("live progress over graphql-ws", () => {
  let f: BackupFixture;
  let client: Client;
  beforeAll(async () => {
    f = await startBackupFixture({ labDiskMb: 16 });
    client = createClient({
      url: `${f.server.url.replace(/^http/, "ws")}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${f.token}` },
      retryAttempts: 0,
    });
  });
  afterAll(async () => {
    await client?.dispose();
    await f?.clearFaults().catch(() => undefined);
    await f?.stop();
  });

  it("shows a slowed FULL backup's progress rising in runUpdated and taskUpdated, each ending with its final status", {
    timeout: 120_000,
  }, async () => {
    const vm = f.vm("db-data");
    const job = await f.createJob({
      name: "live",
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });
    // A first, quick run gives the warm-up events of runUpdated(jobId) a run to carry.
    const warmUpRun = await f.runToEnd(job.id, job.schedules[0].id);
    expectSuccess(warmUpRun);
    const runs = subscribe<RunEvent>(client, "subscription($j: ID) { runUpdated(jobId: $j) { id status progress transferredBytes } }", {
      j: job.id,
    });
    await untilActive(runs, () => f.server.cairn.services.events.publish({ type: "run", runId: warmUpRun.id, jobId: job.id }));

    await f.setFault("export_bytes_per_second", { rate: 4 * 1024 * 1024 });
    const runId = await f.startRun(job.id, job.schedules[0].id);
    const started = await f.waitForRun(runId, (run) => run.tasks.length > 0);
    const root = started.tasks.find((t: { parentId: string | null }) => t.parentId === null);
    const tasks = subscribe<TaskEvent>(client, "subscription($r: ID!) { taskUpdated(runId: $r) { id kind status progress sizeBytes } }", {
      r: runId,
    });
    await untilActive(tasks, () => f.server.cairn.services.events.publish({ type: "task", runId, taskId: root.id }));

    // Run events until this run's final status.
    const runEvents: RunEvent[] = [];
    for (;;) {
      const event = await runs.next();
      if (event.id !== runId) continue; // warm-up events of the first run
      runEvents.push(event);
      if (FINAL.has(event.status)) break;
    }
    const ended = await f.waitForEnd(runId);
    expectSuccess(ended);
    await f.clearFaults();

    // Task events: drain until a marker published after the run's end comes back (the bus delivers in order). The root
    // task's own final event came before the marker, so the marker is the second final event of the root.
    await f.server.cairn.services.events.publish({ type: "task", runId, taskId: root.id });
    const taskEvents: TaskEvent[] = [];
    let rootFinals = 0;
    while (rootFinals < 2) {
      const event = await tasks.next();
      if (event.id === root.id && FINAL.has(event.status) && ++rootFinals === 2) break; // the marker itself is not kept
      taskEvents.push(event);
    }
    runs.dispose();
    tasks.dispose();

    // The run: transferred bytes rise through several values, never down, and the last event is the final status.
    expect(runEvents.at(-1)!.status).toBe("SUCCESS");
    expect(runEvents.slice(0, -1).every((e) => !FINAL.has(e.status))).toBe(true);
    const bytes = runEvents.map((e) => e.transferredBytes);
    expect(nonDecreasing(bytes), bytes.join(", ")).toBe(true);
    expect(new Set(bytes).size, bytes.join(", ")).toBeGreaterThanOrEqual(3);
    // The run's progress follows its one VM's export (not only 0, then 1 at the end).
    const progress = runEvents.map((e) => e.progress);
    expect(nonDecreasing(progress), progress.join(", ")).toBe(true);
    expect(new Set(progress.filter((p) => p > 0 && p < 1)).size, progress.join(", ")).toBeGreaterThanOrEqual(3);
    expect(runEvents.at(-1)!.progress).toBe(1);
    expect(runEvents.at(-1)!.transferredBytes).toBe(ended.transferredBytes);

    // Each task: progress never goes down, and its last event is its final status, as recorded.
    const byTask = new Map<string, TaskEvent[]>();
    for (const event of taskEvents) byTask.set(event.id, [...(byTask.get(event.id) ?? []), event]);
    for (const task of ended.tasks) {
      const events = byTask.get(task.id);
      if (!events) continue; // ended before the subscription was live (the snapshot, say)
      const statuses = events.map((e) => e.status);
      expect(statuses.at(-1), `${task.kind} ${task.name}: ${statuses.join(" ")}`).toBe(task.status);
      expect(
        statuses.slice(0, statuses.indexOf(task.status)).every((s) => s === "RUNNING"),
        statuses.join(" "),
      ).toBe(true);
      expect(
        statuses.slice(statuses.indexOf(task.status)).every((s) => s === task.status),
        statuses.join(" "),
      ).toBe(true);
      expect(nonDecreasing(events.map((e) => e.progress)), `${task.kind}: ${events.map((e) => e.progress).join(", ")}`).toBe(true);
    }
    // The slowed export and its transfer were seen moving: several distinct progress values below 1, then 1 at SUCCESS.
    for (const kind of ["export", "transfer"]) {
      const task = ended.tasks.find((t: { kind: string }) => t.kind === kind);
      const events = byTask.get(task.id) ?? [];
      const running = events.filter((e) => e.status === "RUNNING").map((e) => e.progress);
      expect(new Set(running.filter((p) => p > 0 && p < 1)).size, `${kind}: ${running.join(", ")}`).toBeGreaterThanOrEqual(3);
      expect(events.at(-1)).toMatchObject({ status: "SUCCESS", progress: 1 });
      const sizes = events.map((e) => e.sizeBytes ?? 0);
      expect(nonDecreasing(sizes), `${kind} sizes: ${sizes.join(", ")}`).toBe(true);
    }
    expect(byTask.get(root.id)!.at(-1)!.status).toBe("SUCCESS");
    // The run's root task (the run row of the page's task tree) moves with the run, not 0 until the end.
    const rootProgress = (byTask.get(root.id) ?? []).filter((e) => e.status === "RUNNING").map((e) => e.progress);
    expect(new Set(rootProgress.filter((p) => p > 0 && p < 1)).size, `root: ${rootProgress.join(", ")}`).toBeGreaterThanOrEqual(3);
    expect(byTask.get(root.id)!.at(-1)!.sizeBytes).toBe(ended.transferredBytes);
  });

  it("measures a slowed delta's export and transfer against the blocks the delta carries, not the disk's size", {
    timeout: 120_000,
  }, async () => {
    const vm = f.vm("db-data");
    const [disk] = f.diskRefs(vm.ref);
    const job = await f.createJob({
      name: "live-delta",
      mode: "DELTA",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 3 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    // 2 of the 16 MiB disk's 8 blocks change: the delta carries about 4 MiB, a quarter of the virtual size.
    await f.xapi.call("lab.scribble", disk, 2, "live-delta");
    await f.setFault("export_bytes_per_second", { rate: 1024 * 1024 });
    const runId = await f.startRun(job.id, job.schedules[0].id);
    const started = await f.waitForRun(runId, (run) => run.tasks.length > 0);
    const root = started.tasks.find((t: { parentId: string | null }) => t.parentId === null);
    const tasks = subscribe<TaskEvent>(
      client,
      "subscription($r: ID!) { taskUpdated(runId: $r) { id kind status progress sizeBytes bytesPerSecond etaSeconds } }",
      { r: runId },
    );
    await untilActive(tasks, () => f.server.cairn.services.events.publish({ type: "task", runId, taskId: root.id }));
    const ended = await f.waitForEnd(runId);
    await f.clearFaults();
    expectSuccess(ended);
    await f.server.cairn.services.events.publish({ type: "task", runId, taskId: root.id });
    const taskEvents: TaskEvent[] = [];
    let rootFinals = 0;
    while (rootFinals < 2) {
      const event = await tasks.next();
      if (event.id === root.id && FINAL.has(event.status) && ++rootFinals === 2) break;
      taskEvents.push(event);
    }
    tasks.dispose();
    for (const kind of ["export", "transfer"]) {
      const task = ended.tasks.find((t: { kind: string }) => t.kind === kind);
      expect(task.result?.differencing ?? true, `${kind} of a delta`).toBe(true);
      // Past its first MiB the export's head (footer, header, BAT: 2 KiB here) has long gone by.
      const running = taskEvents.filter(
        (e) => e.id === task.id && e.status === "RUNNING" && (e.sizeBytes ?? 0) >= 1024 * 1024 && e.progress < 0.99,
      );
      const shown = running.map((e) => `${e.progress.toFixed(3)} at ${e.sizeBytes} of ${task.sizeBytes} bytes`).join(", ");
      expect(running.length, `${kind}: ${shown}`).toBeGreaterThan(0);
      // Each figure is the bytes so far over the delta's own size (what it ends with), not over the 16 MiB virtual size,
      // against which these 4 MiB would never pass 0.27.
      for (const event of running) expect(event.progress, `${kind}: ${shown}`).toBeCloseTo((event.sizeBytes ?? 0) / task.sizeBytes, 2);
      // The same figures give its speed and the time it has left while it runs; an ended task has a speed, no time left.
      for (const event of running) {
        expect(event.bytesPerSecond, shown).toBeGreaterThan(0);
        expect(event.etaSeconds, shown).not.toBeNull();
      }
      const last = taskEvents.filter((e) => e.id === task.id).at(-1)!;
      expect(last).toMatchObject({ status: "SUCCESS", etaSeconds: null });
      expect(last.bytesPerSecond).toBeGreaterThan(0);
    }
  });
});
