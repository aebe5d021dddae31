/**
 * CAIRN_ROLE with real processes: one api process (with the lab in it) and two worker processes on one Postgres, each a
 * child process, running real FULL backups of lab VMs (test/support/cairn-cluster.ts). Proves what README "Several
 * instances" promises: runs and the VMs of one job spread over the workers, a job's VM concurrency holds across them, the
 * api's subscribers see every worker's progress, a schedule fires once, and a worker killed with SIGKILL leaves its run
 * INTERRUPTED and cleaned by the other worker, after which the job runs again.
 *
 * The lab's exports are slowed (fault export_bytes_per_second) so that VMs overlap in time as they would on real disks;
 * every wait is a condition on the database or on the api's answers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSocket, type OpenSocket } from "../api/graphql-ws-client.js";
import { startCairnCluster, cloneLabVms, type CairnCluster, type ClusterProcess } from "../support/cairn-cluster.js";
import { eventually } from "../support/eventually.js";
import { loadConfig } from "../../server/config.js";
import { CairnError, ErrorCode } from "../../server/errors.js";

const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);
const MIB = 1024 * 1024;

interface TaskRow {
  id: string;
  parentId: string | null;
  kind: string;
  status: string;
  startedAt: Date;
  endedAt: Date | null;
  result: unknown;
  message: string | null;
}

describe("several instances: one api and two workers on one Postgres", { timeout: 600_000 }, () => {
  let cluster: CairnCluster;
  let vmUuids: string[];
  let remoteId: string;
  const sockets: OpenSocket[] = [];

  beforeAll(async () => {
    cluster = await startCairnCluster({
      workers: 2,
      // One VM at a time per worker: a job with concurrency 2 needs both workers, whoever polls first.
      workerVms: 1,
      labDiskMb: 16,
      prepare: async (c) => void (vmUuids = await cloneLabVms(c, 4, "cluster")),
    });
    const { remotes } = await cluster.gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }");
    remoteId = remotes.find((r) => r.name === "local")!.id;
  }, 300_000);
  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await cluster?.stop();
  }, 180_000);

  const show = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v), 1);
  const gql: CairnCluster["gql"] = (query, variables) => cluster.gql(query, variables);
  const workerIdOf = (proc: ClusterProcess) => (id: string | null | undefined) => id?.split("/")[1] === String(proc.pid);
  const processOf = (workerId: string | null | undefined) => cluster.workers.find((w) => workerIdOf(w)(workerId));
  const workerOfTask = (task: TaskRow) => (task.result as { worker?: string } | null)?.worker ?? null;

  async function createJob(name: string, concurrency: number, vms: string[], schedules: unknown[] = []) {
    const { createJob: job } = await gql<{ createJob: { id: string; schedules: { id: string }[] } }>(
      "mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }",
      { input: { name, mode: "FULL", selection: { vmUuids: vms }, remoteIds: [remoteId], settings: { concurrency }, schedules } },
    );
    return job;
  }
  async function runJob(jobId: string): Promise<string> {
    return (await gql<{ runJob: { id: string } }>("mutation($id: ID!) { runJob(id: $id) { id } }", { id: jobId })).runJob.id;
  }
  async function waitForRun(runId: string, predicate: (run: { status: string; workerId: string | null; error: string | null }) => boolean) {
    return eventually(
      `run ${runId} to reach the awaited state`,
      async () => {
        const run = await cluster.db.run.findUniqueOrThrow({ where: { id: runId } });
        if (!predicate(run)) throw new Error(`run ${runId} is ${run.status} (${run.error ?? "no error"})`);
        return run;
      },
      { timeoutMs: 240_000, intervalMs: 200 },
    );
  }
  const tasksOf = (runId: string): Promise<TaskRow[]> => cluster.db.task.findMany({ where: { runId }, orderBy: { position: "asc" } });
  /** Each VM's span as its executing worker recorded it: from its first subtask's start to the VM's end. */
  function vmSpans(tasks: TaskRow[]) {
    return tasks
      .filter((t) => t.kind === "vm")
      .map((vm) => {
        const children = tasks.filter((t) => t.parentId === vm.id);
        const start = Math.min(...children.map((c) => c.startedAt.getTime()));
        return { id: vm.id, worker: workerOfTask(vm), start, end: vm.endedAt!.getTime() };
      });
  }
  /** The largest number of spans under way at one instant. */
  function maxOverlap(spans: { start: number; end: number }[]): number {
    const edges = spans.flatMap((s) => [
      { at: s.start, step: 1 },
      { at: s.end, step: -1 },
    ]);
    edges.sort((a, b) => a.at - b.at || a.step - b.step);
    let now = 0;
    let max = 0;
    for (const edge of edges) max = Math.max(max, (now += edge.step));
    return max;
  }

  it("refuses an unknown CAIRN_ROLE naming the variable; a worker answers /healthz and serves no API", async () => {
    expect(loadConfig({}).role).toBe("all");
    expect(loadConfig({ CAIRN_ROLE: "Worker" }).role).toBe("worker");
    let error: unknown;
    try {
      loadConfig({ CAIRN_ROLE: "scheduler" });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(CairnError);
    expect((error as CairnError).code).toBe(ErrorCode.InvalidConfig);
    expect((error as CairnError).message).toContain('CAIRN_ROLE="scheduler": expected all (API and runs), api');

    const worker = cluster.workers[0];
    expect(await (await fetch(`${worker.url}/healthz`)).json()).toEqual({ status: "ok", role: "worker" });
    const graphql = await fetch(`${worker.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __typename }" }),
    });
    expect(graphql.status).toBe(404);
    expect((await fetch(`${worker.url}/`)).status).toBe(404);
  });

  it("spreads one job's VMs over both workers within the job's concurrency; the api's subscribers see every worker's progress", async () => {
    await cluster.xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 4 * MIB });
    const job = await createJob("spread", 2, vmUuids);
    const socket = openSocket(cluster.wsUrl, `Bearer ${cluster.token}`);
    sockets.push(socket);
    await socket.connected;
    const runEvents: { id: string; status: string }[] = [];
    const taskEvents: { id: string; progress: number; status: string }[] = [];
    const runSubscription = socket.client.subscribe<{ runUpdated: { id: string; status: string } }>(
      { query: "subscription($j: ID) { runUpdated(jobId: $j) { id status } }", variables: { j: job.id } },
      { next: (m) => m.data && runEvents.push(m.data.runUpdated), error: () => undefined, complete: () => undefined },
    );
    const runId = await runJob(job.id);
    const taskSubscription = socket.client.subscribe<{ taskUpdated: { id: string; progress: number; status: string } }>(
      { query: "subscription($r: ID!) { taskUpdated(runId: $r) { id progress status } }", variables: { r: runId } },
      { next: (m) => m.data && taskEvents.push(m.data.taskUpdated), error: () => undefined, complete: () => undefined },
    );

    const run = await waitForRun(runId, (r) => ENDED.has(r.status));
    const tasks = await tasksOf(runId);
    expect(run.status, `${run.error}\n${show(tasks)}`).toBe("SUCCESS");
    expect(processOf(run.workerId), "the run was held by one of the workers, not by the api").toBeDefined();
    const vms = tasks.filter((t) => t.kind === "vm");
    expect(vms).toHaveLength(4);
    expect(vms.every((t) => t.status === "SUCCESS")).toBe(true);
    const executedBy = new Set(vms.map(workerOfTask));
    expect([...executedBy].map((w) => processOf(w)?.name).sort()).toEqual(["worker 1", "worker 2"]);
    expect(maxOverlap(vmSpans(tasks))).toBeLessThanOrEqual(2);
    expect(await cluster.db.restorePoint.count({ where: { runId } })).toBe(4);

    // Progress recorded by each worker reached the api process's subscriber (LISTEN/NOTIFY across processes).
    await eventually("the run's last event on the api's subscription", async () => {
      if (!runEvents.some((e) => e.id === runId && e.status === "SUCCESS")) throw new Error(JSON.stringify(runEvents));
    });
    const parentOf = new Map(tasks.map((t) => [t.id, t.parentId]));
    const vmOf = (taskId: string): TaskRow | undefined => {
      for (let id: string | null | undefined = taskId; id; id = parentOf.get(id)) {
        const task = vms.find((v) => v.id === id);
        if (task) return task;
      }
      return undefined;
    };
    const progressSeenFrom = new Set(
      taskEvents
        .filter((e) => e.status === "RUNNING" && e.progress > 0 && vmOf(e.id) && vmOf(e.id)!.id !== e.id)
        .map((e) => workerOfTask(vmOf(e.id)!)),
    );
    expect([...progressSeenFrom].map((w) => processOf(w)?.name).sort()).toEqual(["worker 1", "worker 2"]);
    runSubscription();
    taskSubscription();
  });

  it("spreads runs over both workers, and a job with concurrency 1 never has two VMs under way across them", async () => {
    await cluster.xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 8 * MIB });
    const serial = await createJob("serial", 1, vmUuids.slice(0, 2));
    const single1 = await createJob("single 1", 1, [vmUuids[2]]);
    const single2 = await createJob("single 2", 1, [vmUuids[3]]);
    // Three runs at once, and a worker executes two at most: both workers hold runs.
    const runIds = await Promise.all([serial, single1, single2].map((j) => runJob(j.id)));
    const runs = await Promise.all(runIds.map((id) => waitForRun(id, (r) => ENDED.has(r.status))));
    for (const run of runs) expect(run.status, run.error ?? "").toBe("SUCCESS");
    expect(new Set(runs.map((r) => processOf(r.workerId)?.name))).toEqual(new Set(["worker 1", "worker 2"]));

    const spans = vmSpans(await tasksOf(runIds[0])).sort((a, b) => a.start - b.start);
    expect(spans).toHaveLength(2);
    expect(spans[1].start, "the second VM started after the first ended").toBeGreaterThanOrEqual(spans[0].end);
  });

  it("fires a schedule once, whichever of the three processes ticks first", async () => {
    await cluster.xapi.call("lab.clear_faults");
    // A fixed second, 15 s from now: a cron the API accepts (at most once a minute), firing in this test.
    const second = (new Date().getUTCSeconds() + 15) % 60;
    const job = await createJob("scheduled", 1, [vmUuids[3]], [{ cron: `${second} * * * * *`, exportRetention: 3 }]);
    const scheduleId = job.schedules[0].id;
    const fired = await eventually(
      "the schedule to fire and its run to end",
      async () => {
        const run = await cluster.db.run.findFirst({ where: { scheduleId, trigger: "SCHEDULE" } });
        if (!run || !ENDED.has(run.status)) throw new Error(`no ended scheduled run yet (${run?.status ?? "none"})`);
        return run;
      },
      { timeoutMs: 180_000, intervalMs: 250 },
    );
    await cluster.db.schedule.update({ where: { id: scheduleId }, data: { enabled: false } });
    expect(fired.status, fired.error ?? "").toBe("SUCCESS");
    expect(cluster.api.running && cluster.workers.every((w) => w.running)).toBe(true);
    const sameFire = await cluster.db.run.findMany({ where: { scheduleId, scheduledFor: fired.scheduledFor } });
    expect(sameFire.map((r) => r.id)).toEqual([fired.id]);
    expect(await cluster.db.restorePoint.count({ where: { runId: fired.id } })).toBe(1);
  });

  it("fails the VM of a worker killed mid-VM while the run's worker lives, then cleans the snapshot that worker left", async () => {
    const [job] = await cluster.db.job.findMany({ where: { name: "spread" } });
    await cluster.xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 2 * MIB });
    const runId = await runJob(job.id);
    const held = await waitForRun(runId, (r) => r.status === "RUNNING" && r.workerId !== null);
    const holder = processOf(held.workerId)!;
    const victim = cluster.workers.find((w) => w !== holder && w.running)!;
    // The victim is exporting a VM of the run (its snapshot exists), but does not hold the run.
    const lost = await eventually(
      "a VM of the run under way on the worker not holding it",
      async () => {
        const vm = (await tasksOf(runId)).find((t) => t.kind === "vm" && t.status === "RUNNING" && processOf(workerOfTask(t)) === victim);
        const exporting =
          vm && (await cluster.db.task.count({ where: { runId, status: "RUNNING", progress: { gt: 0 }, kind: { not: "vm" } } }));
        if (!vm || !exporting) throw new Error("not yet");
        return vm;
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    expect((await victim.kill()).signal).toBe("SIGKILL");

    const run = await waitForRun(runId, (r) => ENDED.has(r.status));
    const tasks = await tasksOf(runId);
    expect(run.status, `${run.error}\n${show(tasks)}`).toBe("FAILURE");
    const lostTask = tasks.find((t) => t.id === lost.id)!;
    expect(lostTask.status).toBe("FAILURE");
    expect(lostTask.message).toContain("stopped (crash or kill)");
    expect(tasks.filter((t) => t.kind === "vm" && t.id !== lost.id).every((t) => t.status === "SUCCESS")).toBe(true);
    expect(await cluster.db.restorePoint.count({ where: { runId } })).toBe(3);
    // The run's worker cleans, once the run has ended, what the dead worker left: its snapshot, and nothing stays RUNNING.
    await eventually(
      "no snapshot and no running task left by the dead worker",
      async () => {
        await cluster.xapi.barrier();
        const left = Object.values(cluster.xapi.objects.all).filter(
          (o) => o.$type === "VM" && o.is_a_snapshot && (o.other_config as Record<string, string>)["cairn:run"] === runId,
        );
        const running = await cluster.db.task.count({ where: { runId, status: "RUNNING" } });
        if (left.length > 0 || running > 0) throw new Error(`${left.length} snapshots, ${running} running tasks left`);
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );

    // Two live workers again for the next test.
    cluster.workers.splice(cluster.workers.indexOf(victim), 1, await cluster.startWorker());
    await cluster.xapi.call("lab.clear_faults");
  });

  it("interrupts the run of a worker killed with SIGKILL, cleans it up from the other worker, and runs the job again", async () => {
    const [job] = await cluster.db.job.findMany({ where: { name: "spread" } });
    await cluster.xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 2 * MIB });
    const runId = await runJob(job.id);
    // Both workers are backing up a VM of the run, and its snapshots exist.
    await eventually(
      "two VMs of the run under way on the two workers",
      async () => {
        const busy = (await tasksOf(runId)).filter((t) => t.kind === "vm" && t.status === "RUNNING" && workerOfTask(t));
        const running = await cluster.db.task.findMany({ where: { runId, status: "RUNNING", progress: { gt: 0 }, kind: { not: "vm" } } });
        if (new Set(busy.map(workerOfTask)).size < 2 || running.length === 0) throw new Error("not yet");
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    const snapshotsOfRun = async () => {
      await cluster.xapi.barrier();
      return Object.values(cluster.xapi.objects.all).filter(
        (o) => o.$type === "VM" && o.is_a_snapshot && (o.other_config as Record<string, string>)["cairn:run"] === runId,
      );
    };
    expect((await snapshotsOfRun()).length).toBeGreaterThan(0);
    const held = await cluster.db.run.findUniqueOrThrow({ where: { id: runId } });
    const victim = processOf(held.workerId)!;
    const survivor = cluster.workers.find((w) => w !== victim)!;
    expect((await victim.kill()).signal).toBe("SIGKILL");

    // The survivor's recovery sweep (every 15 s) finds the dead pid, interrupts the run and cleans what it left.
    const interrupted = await waitForRun(runId, (r) => ENDED.has(r.status));
    expect(interrupted.status).toBe("INTERRUPTED");
    expect(interrupted.error).toContain("stopped (crash or kill)");
    await eventually(
      "no snapshot and no running task of the interrupted run",
      async () => {
        const left = await snapshotsOfRun();
        const running = await cluster.db.task.count({ where: { runId, status: "RUNNING" } });
        if (left.length > 0 || running > 0) throw new Error(`${left.length} snapshots, ${running} running tasks left`);
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );

    await cluster.xapi.call("lab.clear_faults");
    const nextId = await runJob(job.id);
    const next = await waitForRun(nextId, (r) => ENDED.has(r.status));
    const tasks = await tasksOf(nextId);
    expect(next.status, `${next.error}\n${show(tasks)}`).toBe("SUCCESS");
    expect(processOf(next.workerId)).toBe(survivor);
    expect(new Set(tasks.filter((t) => t.kind === "vm").map((t) => processOf(workerOfTask(t))))).toEqual(new Set([survivor]));
  });
});
