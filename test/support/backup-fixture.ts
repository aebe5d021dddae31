/**
 * For engine tests: a Cairn server with the lab, signed in, with helpers to create jobs, run them and wait for their end
 * (through the event bus: no polling), and a xen-api client on the lab to drive `lab.*` methods and check results.
 */
import { createClient, type Xapi } from "xen-api";
import { expect } from "vitest";
import { startTestCairn, type TestCairn } from "./cairn-server.js";
import { stopAll } from "./stop-all.js";
import { graphql, type AnyDocument, type ResultOf, type VariablesOf } from "./graphql.js";

const REMOTES = graphql("{ remotes { id name } }");
const CREATE_JOB = graphql("mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }");
const RUN_JOB = graphql("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }");

export interface BackupFixture {
  server: TestCairn;
  token: string;
  xapi: Xapi;
  remoteId: string;
  /** A query as text, with its result type; or better a typed document (test/support/graphql.ts). Throws on errors. */
  gql<T = any>(query: string, variables?: Record<string, unknown>): Promise<T>;
  gql<D extends AnyDocument>(document: D, variables?: VariablesOf<D>): Promise<ResultOf<D>>;
  vm(name: string): { uuid: string; ref: string };
  /** The VDI refs of a VM's disks (VBDs of type Disk). */
  diskRefs(vmRef: string): string[];
  /** The local remote's folder. */
  remoteDir: string;
  createJob(input: Record<string, unknown>): Promise<{ id: string; schedules: { id: string }[] }>;
  /** Runs the job and resolves with the ended run. */
  runToEnd(jobId: string, scheduleId?: string): Promise<any>;
  /** Resolves when the run reaches an end status. */
  waitForEnd(runId: string, timeoutMs?: number): Promise<any>;
  /** Starts a run of the job and returns its id (without waiting for its end). */
  startRun(jobId: string, scheduleId?: string): Promise<string>;
  /** The job's snapshots of the VM on the lab pool, oldest first, after the client's cache caught up with XAPI. */
  jobSnapshots(jobId: string, vmUuid?: string): Promise<any[]>;
  /** The job's restore points (every page). */
  restorePoints(jobId: string, kind?: string): Promise<any[]>;
  /**
   * Resolves with the run (RUN_FIELDS) once `predicate` holds for it, re-reading it at each of its run or task events (no
   * polling); fails after `timeoutMs`.
   */
  waitForRun(runId: string, predicate: (run: any) => boolean, timeoutMs?: number): Promise<any>;
  /** `lab.set_fault(name, params)`. */
  setFault(name: string, params: Record<string, unknown>): Promise<void>;
  /** `lab.clear_faults()`. */
  clearFaults(): Promise<void>;
  stop(): Promise<void>;
}

export const RUN_FIELDS = `id status error progress transferredBytes vmsTotal vmsSucceeded vmsFailed vmUuids
  tasks { id parentId kind name status progress message warnings result sizeBytes vmUuid }`;

export const RESTORE_POINT_FIELDS = `id kind vmUuid vmName timestamp chainLength quiesced compression sizeBytes sr
  remote { id } run { id } disks { id name virtualSize }`;

const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

/** `env`: more settings of the server (e.g. SMTP_URL), as environment variables; `embeddedDatabase`: see startTestCairn. */
export async function startBackupFixture(
  options: { labPools?: number; labDiskMb?: number; env?: Record<string, string>; embeddedDatabase?: boolean } = {},
): Promise<BackupFixture> {
  const server = await startTestCairn({
    lab: true,
    labPools: options.labPools,
    embeddedDatabase: options.embeddedDatabase,
    env: { ...(options.labDiskMb ? { LAB_DISK_MB: String(options.labDiskMb) } : {}), ...options.env },
  });
  let xapi: Xapi | undefined;
  try {
    const token = await server.login();
    const lab = server.cairn.labs[0];
    xapi = createClient({
      url: lab.url,
      auth: { user: lab.user, password: lab.password },
      allowUnauthorized: true,
      eventPollDelay: 1000,
    }) as Xapi;
    await xapi.connect();
    await xapi.objectsFetched;
    return await withServer(server, token, xapi);
  } catch (error) {
    // The caller never gets the fixture to stop: stop what was started here.
    await xapi?.disconnect().catch(() => undefined);
    await server.stop();
    throw error;
  }
}

async function withServer(server: TestCairn, token: string, xapi: Xapi): Promise<BackupFixture> {
  const gql = (async (query: string | AnyDocument, variables?: Record<string, unknown>) => {
    const result = await server.graphql(query as string, variables, token);
    if (result.errors) throw new Error(`GraphQL error: ${JSON.stringify(result.errors)}`);
    return result.data;
  }) as BackupFixture["gql"];
  const remotes = await gql(REMOTES);
  const waitForEnd = async (runId: string, timeoutMs = 120_000) => {
    const controller = new AbortController();
    const events = server.cairn.services.events.subscribe(controller.signal);
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      let run = (await gql<{ run: any }>(`query($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`, { id: runId })).run;
      if (ENDED.has(run.status)) return run;
      for await (const event of events) {
        if (event.type !== "run" || event.runId !== runId) continue;
        run = (await gql<{ run: any }>(`query($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`, { id: runId })).run;
        if (ENDED.has(run.status)) return run;
      }
      throw new Error(`run ${runId} did not end within ${timeoutMs / 1000} s (last status ${run.status})`);
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  };
  return {
    server,
    token,
    xapi,
    remoteId: remotes.remotes.find((r) => r.name === "local")!.id,
    gql,
    vm(name) {
      const vm = Object.values(xapi.objects.all).find(
        (o) => o.$type === "VM" && o.name_label === name && !o.is_a_snapshot && !o.is_a_template,
      );
      if (!vm) throw new Error(`no VM ${name} in the lab`);
      return { uuid: String(vm.uuid), ref: vm.$ref };
    },
    diskRefs(vmRef) {
      const record = xapi.getObjectByRef(vmRef) as unknown as { VBDs: string[] };
      return record.VBDs.map((ref) => xapi.getObjectByRef(ref) as unknown as { type: string; VDI: string })
        .filter((vbd) => vbd.type === "Disk")
        .map((vbd) => vbd.VDI);
    },
    remoteDir: `${server.dataDir}/backups`,
    async createJob(input) {
      // The input is what each test builds (often deliberately partial): typed at the call sites, not here.
      const data = await gql(CREATE_JOB, { input } as VariablesOf<typeof CREATE_JOB>);
      return data.createJob;
    },
    async runToEnd(jobId, scheduleId) {
      const data = await gql(RUN_JOB, { id: jobId, s: scheduleId ?? null });
      return waitForEnd(data.runJob.id);
    },
    waitForEnd,
    async waitForRun(runId, predicate, timeoutMs = 60_000) {
      const controller = new AbortController();
      const events = server.cairn.services.events.subscribe(controller.signal);
      const timer = setTimeout(() => controller.abort(), timeoutMs);
      const read = async () => (await gql<{ run: any }>(`query($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`, { id: runId })).run;
      try {
        let run = await read();
        if (predicate(run)) return run;
        for await (const event of events) {
          if (event.runId !== runId) continue;
          run = await read();
          if (predicate(run)) return run;
          if (ENDED.has(run.status))
            throw new Error(
              `run ${runId} ended ${run.status} (${run.error}) before the awaited state:\n${JSON.stringify(run.tasks, null, 1)}`,
            );
        }
        throw new Error(
          `run ${runId} did not reach the awaited state within ${timeoutMs / 1000} s (status ${run.status}):\n${JSON.stringify(run.tasks, null, 1)}`,
        );
      } finally {
        clearTimeout(timer);
        controller.abort();
      }
    },
    async startRun(jobId, scheduleId) {
      const data = await gql(RUN_JOB, { id: jobId, s: scheduleId ?? null });
      return data.runJob.id;
    },
    async jobSnapshots(jobId, vmUuid) {
      await xapi.barrier();
      return Object.values(xapi.objects.all)
        .filter((o) => o.$type === "VM" && o.is_a_snapshot && (o.other_config as Record<string, string>)["xo:backup:job"] === jobId)
        .filter((o) => vmUuid === undefined || (o.other_config as Record<string, string>)["xo:backup:vm"] === vmUuid)
        .sort((a, b) => String(a.snapshot_time).localeCompare(String(b.snapshot_time)));
    },
    async restorePoints(jobId, kind) {
      const data = await gql<{ restorePoints: { nodes: any[] } }>(
        `query($f: RestorePointFilter) { restorePoints(first: 50, filter: $f) { nodes { ${RESTORE_POINT_FIELDS} } } }`,
        { f: { jobId, ...(kind ? { kind } : {}) } },
      );
      return data.restorePoints.nodes;
    },
    async setFault(name, params) {
      await xapi.call("lab.set_fault", name, params);
    },
    async clearFaults() {
      await xapi.call("lab.clear_faults");
    },
    async stop() {
      await stopAll(
        () => xapi.disconnect(),
        () => server.stop(),
      );
    },
  };
}

/** Asserts a run succeeded, showing its task tree when it did not. */
export function expectSuccess(run: { status: string; error: string | null; tasks: unknown[] }): void {
  expect(run.status, `run ended ${run.status}: ${run.error}\n${JSON.stringify(run.tasks, null, 1)}`).toBe("SUCCESS");
}
