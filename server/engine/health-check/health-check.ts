/**
 * The health check of one restore point: restore it as a temporary VM on a scratch SR, start it, wait until XAPI reports it
 * Running (through the pool's events, bounded), destroy it with its disks, and record the verdict on the restore point
 * (verificationStatus OK / FAILED with the reason, verificationCheckedAt). Whatever happens, the temporary VM is destroyed.
 *
 * - XVA, VHD_CHAIN and SNAPSHOT points restore through the RESTORE executor itself (same code, same task tree under the
 *   check's task: `restore` > `import` | `copy` > `configure`); REPLICA points with `VM.copy` of the replica (or replica
 *   snapshot) inside its pool, its copied start block removed.
 * - The temporary VM is named "<vm> [cairn health check <point id8>]" and tagged `cairn:no-bak` and `cairn:health-check`, so no
 *   backup selects it while it lives.
 * - A VM tagged `cairn:no-health-check` is not checked: SKIPPED with the reason, the verdict left as it was.
 * - Which SR: see {@link chooseHealthCheckSr}.
 *
 * Task tree: `healthCheck` > `restore` (or `copy`) > `start` > `wait` > `destroy`.
 */
import type { Db } from "../../db/prisma.js";
import { messageOf } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { StoredRemotes } from "../stored-remotes.js";
import { OtherConfigKey, Tag } from "../../xapi/other-config-keys.js";
import type { PoolConnection, XapiRecord } from "../../xapi/pool-connection.js";
import { describeXapiError } from "../../xapi/pool-connection.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import { ReplicaOperations } from "../../xapi/replica-operations.js";
import { VmOperations } from "../../xapi/vm-operations.js";
import { chooseHealthCheckSr, type HealthCheckSr } from "./health-check-sr.js";
import { createRestoreExecutor } from "../restore/restore-executor.js";
import type { RestoreRunParams } from "../restore/restore-params.js";
import type { TaskContext } from "../task-context.js";

export interface HealthCheckDeps {
  db: Db;
  registry: PoolRegistry;
  remotes: StoredRemotes;
  log: Logger;
}

/** How long the temporary VM may take to reach Running, as Xen Orchestra's `healthCheckTimeout` default. */
export const DEFAULT_HEALTH_CHECK_TIMEOUT_MS = 10 * 60_000;

export type HealthVerdict =
  | { status: "OK"; vmName: string; srUuid: string }
  | { status: "FAILED"; reason: string }
  | { status: "SKIPPED"; reason: string };

type RestorePointRow = NonNullable<Awaited<ReturnType<Db["restorePoint"]["findUnique"]>>>;

export interface HealthCheckRequest {
  point: RestorePointRow;
  /** The SR asked for (the job's healthCheckSrUuid, or the caller's); null: chosen by {@link chooseHealthCheckSr}. */
  srUuid: string | null;
  /** The check's task (kind `healthCheck`): the steps hang under it, and it ends with the verdict. */
  task: TaskContext;
  signal: AbortSignal;
  log: Logger;
  /** The run id (for the restore executor's context). */
  runId: string;
  timeoutMs?: number;
}

/**
 * Checks a restore point and records the verdict (not for SKIPPED). Ends `request.task` (SUCCESS, FAILURE with the reason,
 * SKIPPED) unless the signal was aborted, in which case it rethrows and leaves the task to the run machinery.
 */
export async function checkRestorePointHealth(deps: HealthCheckDeps, request: HealthCheckRequest): Promise<HealthVerdict> {
  const { point, task } = request;
  const skip = await noHealthCheckReason(deps, point.vmUuid);
  if (skip) {
    await task.end("SKIPPED", skip);
    return { status: "SKIPPED", reason: skip };
  }
  let verdict: HealthVerdict;
  let target: HealthCheckSr | undefined;
  const temporary: { replicas?: ReplicaOperations; ref?: string } = {};
  try {
    target = await chooseHealthCheckSr(deps, point, request.srUuid, (message) => task.warn(message));
    temporary.replicas = new ReplicaOperations(target.connection);
    const name = `${point.vmName} [cairn health check ${point.id.slice(0, 8)}]`;
    temporary.ref = await restoreTemporaryVm(deps, request, target, name);
    const vmRef = temporary.ref;
    const ops = temporary.replicas.ops;
    await ops.addTags(vmRef, [Tag.NoBackup, Tag.HealthCheck]);
    await task.run("start", `start ${name}`, async () => {
      await ops.start(vmRef);
      return {};
    });
    const timeoutMs = request.timeoutMs ?? DEFAULT_HEALTH_CHECK_TIMEOUT_MS;
    await task.run("wait", `wait until ${name} runs (at most ${Math.round(timeoutMs / 1000)} s)`, async () => {
      const state = await waitForPowerState(target!.connection, vmRef, "Running", timeoutMs, request.signal);
      if (state !== "Running")
        throw new Error(`the VM did not reach Running within ${Math.round(timeoutMs / 1000)} s (power state ${state})`);
      return { powerState: state };
    });
    verdict = { status: "OK", vmName: name, srUuid: target.srUuid };
  } catch (error) {
    if (request.signal.aborted) {
      await destroyTemporary(temporary, task);
      throw error;
    }
    verdict = { status: "FAILED", reason: messageOf(error) };
  }
  await destroyTemporary(temporary, task);
  await deps.db.restorePoint.update({
    where: { id: point.id },
    data: {
      verificationStatus: verdict.status,
      verificationCheckedAt: new Date(),
      verificationError: verdict.status === "FAILED" ? verdict.reason : null,
    },
  });
  if (verdict.status === "OK") await task.succeed({ verdict: "OK", srUuid: verdict.srUuid });
  else await task.fail(new Error(verdict.status === "FAILED" ? verdict.reason : "skipped"));
  return verdict;
}

/** The reason a VM is not health-checked (its tag, live or as last seen), or undefined. */
async function noHealthCheckReason(deps: HealthCheckDeps, vmUuid: string): Promise<string | undefined> {
  const live = deps.registry
    .all()
    .flatMap((connection) => connection.records("VM"))
    .find((vm) => vm.uuid === vmUuid && !vm.is_a_snapshot);
  const tags = live ? ((live.tags as string[]) ?? []) : ((await deps.db.vmInventory.findUnique({ where: { uuid: vmUuid } }))?.tags ?? []);
  const tag = tags.find((t) => t === Tag.NoHealthCheck || t.startsWith(`${Tag.NoHealthCheck}=`));
  if (!tag) return undefined;
  const why = tag.includes("=") ? `: ${tag.slice(tag.indexOf("=") + 1)}` : "";
  return `the VM is tagged ${Tag.NoHealthCheck}${why}: not health-checked`;
}

/** Creates the temporary VM on the chosen SR; @returns its ref. A failed restore leaves nothing (the restore cleans up). */
async function restoreTemporaryVm(
  deps: HealthCheckDeps,
  request: HealthCheckRequest,
  target: HealthCheckSr,
  name: string,
): Promise<string> {
  const { point, task } = request;
  if (point.kind === "REPLICA") {
    return task.run("copy", `VM.copy of replica ${point.objectUuid} onto ${target.srName}`, async () => {
      const source = target.connection.records("VM").find((vm) => vm.uuid === point.objectUuid);
      if (!source) throw new Error(`the replica ${point.objectUuid} is no longer on its pool (removed by retention or by hand)`);
      const ops = new VmOperations(target.connection);
      let ref: string;
      try {
        ref = await ops.copy(source.$ref, name, target.srRef);
      } catch (error) {
        throw new Error(`VM.copy of the replica failed: ${describeXapiError(error)}`, { cause: error });
      }
      await ops.unsetTemplate(ref);
      await ops.unblockOperation(ref, "start");
      await ops.removeOtherConfig(
        ref,
        Object.values(OtherConfigKey).filter((k) => k.startsWith("cairn:replica:")),
      );
      await ops.sync();
      return ref;
    });
  }
  const params: RestoreRunParams = {
    restorePointId: point.id,
    poolId: target.connection.poolId,
    srUuid: target.srUuid,
    name,
    start: false,
    requestedBy: null,
  };
  const outcome = await createRestoreExecutor(deps)({
    run: { id: request.runId, kind: "RESTORE", jobId: null, scheduleId: null, trigger: "MANUAL", params },
    root: task,
    signal: request.signal,
    log: request.log,
    report: () => undefined,
  });
  if (outcome.status !== "SUCCESS") throw new Error(outcome.error ?? "the restore failed");
  const ops = new ReplicaOperations(target.connection).ops;
  await ops.sync();
  const vm = target.connection.records("VM").find((record: XapiRecord) => record.name_label === name && !record.is_a_snapshot);
  if (!vm) throw new Error(`the restore ended but its VM (${name}) is not in the pool`);
  return vm.$ref;
}

async function destroyTemporary(temporary: { replicas?: ReplicaOperations; ref?: string }, task: TaskContext): Promise<void> {
  if (!temporary.replicas || !temporary.ref) return;
  const { replicas, ref } = temporary;
  await task
    .run("destroy", "destroy the temporary VM and its disks", async () => {
      await replicas.destroyVm(ref);
      return {};
    })
    .catch((error) => task.warn(`the temporary VM ${ref} could not be destroyed (${messageOf(error)}): remove it by hand`));
}

/**
 * Resolves with the VM's power state once it is `wanted`, or with the last state seen after `timeoutMs`; re-checks at each
 * change of the pool's objects (events), not by polling. Rejects when the signal aborts.
 */
export function waitForPowerState(
  connection: PoolConnection,
  vmRef: string,
  wanted: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<string> {
  const current = () => String(connection.records("VM").find((vm) => vm.$ref === vmRef)?.power_state ?? "gone");
  return new Promise<string>((resolve, reject) => {
    const finish = (done: () => void) => {
      clearTimeout(timer);
      connection.off("objects", onObjects);
      signal.removeEventListener("abort", onAbort);
      done();
    };
    const onObjects = () => {
      if (current() === wanted) finish(() => resolve(wanted));
    };
    const onAbort = () => finish(() => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason))));
    const timer = setTimeout(() => finish(() => resolve(current())), timeoutMs);
    connection.on("objects", onObjects);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    else onObjects();
  });
}
