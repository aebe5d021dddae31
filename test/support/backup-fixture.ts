/**
 * For engine tests: a Cairn server with the lab, signed in, with helpers to create jobs, run them and wait for their end
 * (through the event bus: no polling), and a xen-api client on the lab to drive `lab.*` methods and check results.
 */
import { createClient, type Xapi } from "xen-api";
import { expect } from "vitest";
import { startTestCairn, type TestCairn } from "./cairn-server.js";

export interface BackupFixture {
  server: TestCairn;
  token: string;
  xapi: Xapi;
  remoteId: string;
  gql<T = any>(query: string, variables?: Record<string, unknown>): Promise<T>;
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
  stop(): Promise<void>;
}

export const RUN_FIELDS = `id status error progress transferredBytes vmsTotal vmsSucceeded vmsFailed vmUuids
  tasks { id parentId kind name status progress message warnings result sizeBytes vmUuid }`;

const ENDED = new Set(["SUCCESS", "FAILURE", "SKIPPED", "INTERRUPTED", "CANCELLED"]);

export async function startBackupFixture(options: { labPools?: number; labDiskMb?: number } = {}): Promise<BackupFixture> {
  const server = await startTestCairn({ lab: true, labPools: options.labPools, env: options.labDiskMb ? { LAB_DISK_MB: String(options.labDiskMb) } : {} });
  const token = await server.login();
  const lab = server.cairn.labs[0];
  const xapi = createClient({ url: lab.url, auth: { user: lab.user, password: lab.password }, allowUnauthorized: true, eventPollDelay: 1000 }) as Xapi;
  await xapi.connect();
  await xapi.objectsFetched;
  const gql = async <T>(query: string, variables?: Record<string, unknown>): Promise<T> => {
    const result = await server.graphql<T>(query, variables, token);
    if (result.errors) throw new Error(`GraphQL error: ${JSON.stringify(result.errors)}`);
    return result.data as T;
  };
  const remotes = await gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }");
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
      const vm = Object.values(xapi.objects.all).find((o) => o.$type === "VM" && o.name_label === name && !o.is_a_snapshot && !o.is_a_template);
      if (!vm) throw new Error(`no VM ${name} in the lab`);
      return { uuid: String(vm.uuid), ref: vm.$ref };
    },
    diskRefs(vmRef) {
      const record = xapi.getObjectByRef(vmRef) as unknown as { VBDs: string[] };
      return record.VBDs.map((ref) => xapi.getObjectByRef(ref) as unknown as { type: string; VDI: string }).filter((vbd) => vbd.type === "Disk").map((vbd) => vbd.VDI);
    },
    remoteDir: `${server.dataDir}/backups`,
    async createJob(input) {
      const data = await gql<{ createJob: { id: string; schedules: { id: string }[] } }>(
        "mutation($input: JobInput!) { createJob(input: $input) { id schedules { id } } }",
        { input },
      );
      return data.createJob;
    },
    async runToEnd(jobId, scheduleId) {
      const data = await gql<{ runJob: { id: string } }>("mutation($id: ID!, $s: ID) { runJob(id: $id, scheduleId: $s) { id } }", { id: jobId, s: scheduleId ?? null });
      return waitForEnd(data.runJob.id);
    },
    waitForEnd,
    async stop() {
      await xapi.disconnect();
      await server.stop();
    },
  };
}

/** Asserts a run succeeded, showing its task tree when it did not. */
export function expectSuccess(run: { status: string; error: string | null; tasks: unknown[] }): void {
  expect(run.status, `run ended ${run.status}: ${run.error}\n${JSON.stringify(run.tasks, null, 1)}`).toBe("SUCCESS");
}
