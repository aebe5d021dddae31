/**
 * Executes a RESTORE run: restores one restore point as a NEW VM on the target SR, then names it, tags it
 * `cairn:restored` and starts it when asked. The source VM is never read or touched (only the backup or the snapshot is).
 *
 * Task tree: `restore <vm>` (progress = bytes sent / expected) > `import` (XVA, VHD_CHAIN) or `copy` (SNAPSHOT) >
 * `configure` > `start` (when asked). On any failure or cancellation after XAPI created the VM, the VM and its disks are
 * destroyed (a failed import is undone by XAPI itself), so a failed restore leaves nothing behind. From the moment XAPI
 * creates it until it is configured, the VM carries `cairn:import:run` = the run: a restore whose process died is found and
 * removed by the interrupted-run cleanup.
 *
 * VHD_CHAIN points are restored by synthesizing an XVA on the fly from the chains and the stored VM records, imported
 * like an XVA (one code path, one XAPI call, the VM's VBD/VIF layout preserved).
 */
import type { Db } from "../../db/prisma.js";
import { messageOf } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { StoredRemotes } from "../stored-remotes.js";
import { OtherConfigKey, Tag } from "../../xapi/other-config-keys.js";
import { marksToOtherConfig } from "../../xapi/replica-operations.js";

/** Every replica mark, to remove them all from a restored copy. */
const REPLICA_MARK_KEYS = { of: "", job: "", schedule: "", sr: "", datetime: "", mode: "DISASTER_RECOVERY", base: "" } as const;
import type { PoolConnection } from "../../xapi/pool-connection.js";
import { describeXapiError } from "../../xapi/pool-connection.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import { VmOperations } from "../../xapi/vm-operations.js";
import { importXva } from "./restore-import.js";
import { defaultRestoredName, parseRestoreParams, type RestoreRunParams } from "./restore-params.js";
import { openRestorePointBackup } from "../restore-points/restore-point-backup.js";
import { synthesizedXvaSource, xvaFileSource, type XvaSource } from "./restore-remote-sources.js";
import { copyPoolCopy } from "./restore-snapshot.js";
import type { RunContext, RunExecutor, RunOutcome } from "../run-executor.js";
import type { TaskContext } from "../task-context.js";

export interface RestoreExecutorDeps {
  db: Db;
  registry: PoolRegistry;
  remotes: StoredRemotes;
  log: Logger;
}

type RestorePointRow = NonNullable<Awaited<ReturnType<Db["restorePoint"]["findUnique"]>>>;

export function createRestoreExecutor(deps: RestoreExecutorDeps): RunExecutor {
  return async (context: RunContext): Promise<RunOutcome> => {
    const { root, signal } = context;
    const params = parseRestoreParams(context.run.params);
    const point = await deps.db.restorePoint.findUnique({ where: { id: params.restorePointId } });
    if (!point)
      return {
        status: "FAILURE",
        error: `Restore point ${params.restorePointId} no longer exists (removed by retention?): nothing was restored.`,
      };
    context.report({ vmsTotal: 1, vmUuids: [point.vmUuid] });
    const task = await root.child("restore", `restore ${point.vmName}`, { vmUuid: point.vmUuid });
    const created: { connection?: PoolConnection; vmRef?: string } = {};
    let transferred = 0;
    try {
      const connection = deps.registry.get(params.poolId);
      if (!connection || connection.status !== "CONNECTED") throw new Error(`the target pool ${params.poolId} is not connected now`);
      created.connection = connection;
      const sr = connection.records("SR").find((record) => record.uuid === params.srUuid);
      if (!sr) throw new Error(`the target SR ${params.srUuid} is no longer in the pool`);
      const name = params.name ?? defaultRestoredName(point.vmName, new Date());
      const onBytes = (delta: number) => {
        transferred += delta;
        context.report({ transferredBytes: transferred });
      };

      const vmRef = await restoreByKind(
        deps,
        { point, params, connection, srRef: sr.$ref, name, task, signal, onBytes, runId: context.run.id },
        (ref) => (created.vmRef = ref),
      );
      await task.run("configure", `name ${JSON.stringify(name)}, tag ${Tag.Restored}`, async () => {
        await configureRestoredVm(connection, vmRef, { name, point });
        return {};
      });
      if (params.start) {
        await task.run("start", `start ${name}`, async () => {
          await new VmOperations(connection).start(vmRef);
          return {};
        });
      }
      const vmUuid = String(new VmOperations(connection).getRecord(vmRef)?.uuid ?? "");
      await task.succeed({ vmUuid, vmRef, name, poolId: params.poolId, srUuid: params.srUuid, started: params.start }, transferred);
      context.report({ vmsSucceeded: 1, vmsFailed: 0, progress: 1 });
      return { status: "SUCCESS" };
    } catch (error) {
      const cleanup = await destroyHalfRestored(created.connection, created.vmRef);
      if (cleanup) await task.warn(cleanup);
      context.report({ vmsSucceeded: 0, vmsFailed: 1, progress: 1 });
      if (signal.aborted) {
        await task.end(
          "CANCELLED",
          `stopped: ${String(signal.reason ?? "cancelled")}${created.vmRef ? "; the half-restored VM was removed" : ""}`,
        );
        throw signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
      }
      await task.fail(error);
      return { status: "FAILURE", error: `The restore of ${point.vmName} failed: ${messageOf(error)}` };
    }
  };
}

interface KindContext {
  point: RestorePointRow;
  params: RestoreRunParams;
  connection: PoolConnection;
  srRef: string;
  name: string;
  task: TaskContext;
  signal: AbortSignal;
  onBytes(delta: number): void;
  runId: string;
}

/** Creates the VM from the restore point; `onCreated` gets its ref as soon as it exists (for cleanup). */
async function restoreByKind(deps: RestoreExecutorDeps, ctx: KindContext, onCreated: (ref: string) => void): Promise<string> {
  if (ctx.point.kind === "SNAPSHOT" || ctx.point.kind === "REPLICA") {
    return ctx.task.run(
      "copy",
      `VM.copy of ${ctx.point.kind === "SNAPSHOT" ? "snapshot" : "replica"} ${ctx.point.objectUuid}`,
      async () => {
        const ref = await copyPoolCopy(ctx.connection, { uuid: String(ctx.point.objectUuid), name: ctx.name, srRef: ctx.srRef });
        onCreated(ref);
        return ref;
      },
    );
  }
  if (ctx.point.kind !== "XVA" && ctx.point.kind !== "VHD_CHAIN")
    throw new Error(`restore points of kind ${ctx.point.kind} cannot be restored by this version of Cairn`);
  let told = false;
  const opened = await openRestorePointBackup(deps, ctx.point, {
    lease: {
      owner: ctx.runId,
      signal: ctx.signal,
      onWait: (holder) => {
        if (told) return;
        told = true;
        void ctx.task.warn(`waited for the VM's backups to be free: ${holder}`);
      },
    },
  });
  let source: XvaSource | undefined;
  try {
    const importTask = await ctx.task.child(
      "import",
      ctx.point.kind === "XVA"
        ? `import the XVA from ${opened.remoteName}`
        : `import an XVA synthesized from the VHD chains on ${opened.remoteName}`,
    );
    try {
      source = ctx.point.kind === "XVA" ? await xvaFileSource(opened) : await synthesizedXvaSource(opened);
      const expected = source.expectedBytes;
      const result = await importXva({
        connection: ctx.connection,
        srRef: ctx.srRef,
        body: source.body,
        length: source.length,
        expectedBytes: expected,
        task: importTask,
        signal: AbortSignal.any([ctx.signal, opened.signal]),
        onBytes: (delta) => {
          ctx.onBytes(delta);
        },
        // Marked with the run and known to the caller as soon as XAPI created it: a failure, a cancel or a crash removes it.
        runId: ctx.runId,
        onVmCreated: (ref) => onCreated(ref),
      });
      onCreated(result.vmRefs[0]);
      // Only one VM is expected in a VM backup; anything more would be left behind otherwise.
      for (const extra of result.vmRefs.slice(1)) await destroyHalfRestored(ctx.connection, extra);
      await importTask.succeed({ bytes: result.bytes, vmRef: result.vmRefs[0] }, result.bytes);
      return result.vmRefs[0];
    } catch (error) {
      if (ctx.signal.aborted) await importTask.end("CANCELLED", `stopped: ${String(ctx.signal.reason ?? "cancelled")}`);
      else await importTask.fail(error);
      throw error;
    }
  } finally {
    await source?.close();
    await opened.close();
  }
}

/** Name, description, tag; a plain VM (not a template); the client's cache shows it before the next step. */
async function configureRestoredVm(
  connection: PoolConnection,
  vmRef: string,
  options: { name: string; point: RestorePointRow },
): Promise<void> {
  const ops = new VmOperations(connection);
  await ops.setName(
    vmRef,
    options.name,
    `Restored by Cairn from ${options.point.kind} restore point ${options.point.id} of ${options.point.vmName} (${options.point.timestamp.toISOString()}).`,
  );
  await ops.unsetTemplate(vmRef);
  await ops.addTags(vmRef, [Tag.Restored]);
  // Complete now: no longer half-imported for the interrupted-run cleanup.
  await ops.removeOtherConfig(vmRef, [OtherConfigKey.ImportRun]);
  if (options.point.kind === "REPLICA") {
    // A copy of a replica is an ordinary VM: it may start, and it is no replica of anything.
    await ops.unblockOperation(vmRef, "start");
    await ops.removeTags(vmRef, [Tag.Replica]);
    await ops.removeOtherConfig(vmRef, Object.keys(marksToOtherConfig(REPLICA_MARK_KEYS)));
  }
  await ops.sync();
}

/** Destroys a VM this restore created (shut down first if it runs) and its disks. @returns a warning when that failed. */
async function destroyHalfRestored(connection: PoolConnection | undefined, vmRef: string | undefined): Promise<string | undefined> {
  if (!connection || !vmRef) return undefined;
  try {
    await new VmOperations(connection).destroyVm(vmRef);
    return undefined;
  } catch (error) {
    return `the half-restored VM ${vmRef} could not be removed (${describeXapiError(error)}): remove it by hand`;
  }
}
