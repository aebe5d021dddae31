/**
 * What an interrupted run (its process died) leaves behind, removed before the job runs again: the VM folder locks its
 * process held on the job's remotes, temporary files of its writes (the repository cleaner), and the snapshots it made and
 * did not finish (not marked exported, not recorded as a restore point), including one it made and died before tagging
 * (found by its name); and on every pool, the VMs it was importing (a restore, a DR replica, a CR full: marked
 * `cairn:import:run` from the moment XAPI created them until they were complete) are destroyed with their disks, and a CR
 * replica it was writing a delta onto (`cairn:replica:updating`) is checked against its last replica snapshot: unchanged, it
 * stays as it is (the next run is a delta); written, it is marked as matching no base (the next run replaces it with a full).
 */
import { hostname } from "node:os";
import type { Db } from "../../db/prisma.js";
import type { Logger } from "../../log.js";
import { cleanRepository } from "../../repository/cleaner.js";
import { LOCK_RENEW_MS, releaseClaimsOfOwner } from "../../repository/lock.js";
import type { StoredRemotes } from "../stored-remotes.js";
import { OtherConfigKey } from "../../xapi/other-config-keys.js";
import type { PoolRegistry } from "../../xapi/pool-registry.js";
import type { PoolConnection } from "../../xapi/pool-connection.js";
import { ReplicaOperations } from "../../xapi/replica-operations.js";
import { VmOperations } from "../../xapi/vm-operations.js";
import { writtenReplicaDisk } from "../replication/replica-divergence.js";
import { indexRemote } from "../backup/remote-backup-index.js";
import { runSnapshotMark } from "../backup/take-snapshot.js";

interface InterruptedRun {
  id: string;
  jobId: string | null;
  workerId: string | null;
}

/** A claim not renewed for two renew periods belongs to a process that is gone. */
const DEAD_AFTER_MS = 2 * LOCK_RENEW_MS;

export function createInterruptedRunCleanup(deps: { db: Db; registry: PoolRegistry; remotes: StoredRemotes; log: Logger }) {
  return async (run: InterruptedRun): Promise<void> => {
    const log = deps.log.child({ runId: run.id });
    const row = await deps.db.run.findUnique({ where: { id: run.id }, select: { vmUuids: true } });
    const vmUuids = row?.vmUuids ?? [];
    // workerId is `<host>/<pid>/<random>`: on this host, a pid that no longer runs means the run's process is surely gone,
    // so its claims go now; otherwise (another host, or the pid reused) only once they stop being renewed.
    const [host, pid] = (run.workerId ?? "").split("/");
    const surelyDead = host === hostname() && !processRuns(Number(pid));

    if (run.jobId) {
      const links = await deps.db.jobRemote.findMany({ where: { jobId: run.jobId }, include: { remote: true } });
      for (const { remote: remoteRow } of links) {
        const remote = deps.remotes.open(remoteRow);
        try {
          await remote.open();
          for (const vmUuid of vmUuids) {
            // The run's claims carry its id. They go only when not renewed for two renew periods by the remote's clock: a run
            // declared dead while still alive keeps renewing them, keeps its lock, and the clean below waits for it.
            const released = await releaseClaimsOfOwner(remote, vmUuid, run.id, {
              deadAfterMs: surelyDead ? -1 /* any age */ : DEAD_AFTER_MS,
            });
            if (released.length > 0) log.info({ vmUuid, remote: remoteRow.name }, "released the locks of the interrupted run");
            // minAgeMs 0: the clean holds the VM's lock, so no writer of any run (this one included) can be writing there.
            const result = await cleanRepository(remote, { vmUuid, minAgeMs: 0, lock: { owner: run.id } });
            for (const problem of result.problems)
              log.warn({ vmUuid, remote: remoteRow.name, problem }, "cleaning after an interrupted run left something for later");
            if (result.deletedFiles.length)
              log.info({ vmUuid, remote: remoteRow.name, files: result.deletedFiles }, "removed what the interrupted run left");
            // The run may have died between a change on the remote and its record (a commit, a retention): the listing
            // follows what the remote holds now.
            await indexRemote(deps.db, remoteRow.id, remote, { vmUuid });
          }
        } catch (error) {
          log.warn({ err: error, remote: remoteRow.name }, "could not clean a remote after an interrupted run; the next run retries");
        } finally {
          await remote
            .close()
            .catch((error: unknown) => log.debug({ err: error, remote: remoteRow.name }, "could not close a remote after cleaning it"));
        }
      }
    }

    const recorded = new Set(
      (await deps.db.restorePoint.findMany({ where: { runId: run.id, kind: "SNAPSHOT" }, select: { objectUuid: true } })).map(
        (r) => r.objectUuid,
      ),
    );
    const cleanPool = async (connection: PoolConnection) => {
      await cleanImports(connection, run.id, log);
      const ops = new VmOperations(connection);
      for (const snapshot of ops.snapshotsOfRun(run.id, runSnapshotMark(run.id))) {
        const config = snapshot.other_config as Record<string, string>;
        if (config[OtherConfigKey.BackupExported] === "true" || recorded.has(snapshot.uuid)) continue;
        await ops.destroySnapshot(snapshot.$ref).then(
          () => log.info({ snapshot: snapshot.uuid }, "removed a snapshot of the interrupted run"),
          (error) => log.warn({ err: error, snapshot: snapshot.uuid }, "could not remove a snapshot of the interrupted run"),
        );
      }
    };
    for (const connection of deps.registry.all()) {
      if (connection.status === "CONNECTED") {
        await cleanPool(connection);
        continue;
      }
      // A pool not connected yet (a slow start, an outage): cleaned when it connects, not forgotten.
      log.info({ poolId: connection.poolId }, "the interrupted run's pool is not connected: it is cleaned once it connects");
      const onStatus = (status: string) => {
        if (status !== "CONNECTED") return;
        connection.off("status", onStatus);
        void cleanPool(connection).catch((error: unknown) =>
          log.warn({ err: error, poolId: connection.poolId }, "could not clean the interrupted run's objects on a pool"),
        );
      };
      connection.on("status", onStatus);
    }
  };
}

function processRuns(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return true; // unknown: assume alive, the safe side
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** How long the cleanup waits for XAPI to end an import the dead process left running before it gives up on its VM. */
const IMPORT_END_WAIT_MS = 60_000;

/**
 * Destroys a VM the dead run was importing. XAPI may still be running that import (it reads what the dead client had sent
 * before it sees the end of the body) and refuses to destroy the VM meanwhile (`OTHER_OPERATION_IN_PROGRESS [VM, vm, op,
 * task]`): its task is cancelled, and the VM destroyed once the import let go of it (a failed import usually removes
 * the VM itself).
 */
async function destroyImportedVm(connection: PoolConnection, replicas: ReplicaOperations, vmRef: string): Promise<void> {
  const deadline = Date.now() + IMPORT_END_WAIT_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      await replicas.destroyVm(vmRef);
      return;
    } catch (error) {
      const { code, params } = error as { code?: unknown; params?: unknown[] };
      if (code === "HANDLE_INVALID") return; // the failed import removed it
      if (code !== "OTHER_OPERATION_IN_PROGRESS" || Date.now() >= deadline) throw error;
      const task = Array.isArray(params) ? params[3] : undefined;
      if (typeof task === "string") await connection.xapi.call("task.cancel", task).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 5_000)));
      await replicas.ops.sync();
      if (!connection.records("VM").some((vm) => vm.$ref === vmRef)) return;
    }
  }
}

/** The VMs the run was importing, destroyed; the CR replicas it was writing onto, kept or marked incomplete. */
async function cleanImports(connection: PoolConnection, runId: string, log: Logger): Promise<void> {
  const replicas = new ReplicaOperations(connection);
  await replicas.ops.sync();
  const vms = connection.records("VM").filter((vm) => !vm.is_a_snapshot);
  for (const vm of vms.filter((v) => (v.other_config as Record<string, string>)[OtherConfigKey.ImportRun] === runId)) {
    await destroyImportedVm(connection, replicas, vm.$ref).then(
      () => log.info({ vm: vm.uuid, name: vm.name_label }, "removed a VM the interrupted run was importing"),
      (error) => log.warn({ err: error, vm: vm.uuid }, "could not remove a VM the interrupted run was importing; remove it by hand"),
    );
  }
  for (const replica of vms.filter((v) => (v.other_config as Record<string, string>)[OtherConfigKey.ReplicaUpdating] === runId)) {
    try {
      const config = replica.other_config as Record<string, string>;
      const last = replicas
        .replicaSnapshots({
          of: config[OtherConfigKey.ReplicaOf],
          job: config[OtherConfigKey.ReplicaJob],
          sr: config[OtherConfigKey.ReplicaSr],
        })
        .filter((s) => s.snapshot_of === replica.$ref)
        .at(-1);
      const replicaDisks = replicas.ops.disks(replica);
      const lastDisks = last ? replicas.ops.disks(last) : [];
      const pairs = replicaDisks.map((d) => ({ replica: d, snapshot: lastDisks.find((s) => s.userdevice === d.userdevice)! }));
      const intact =
        last !== undefined &&
        pairs.every((p) => p.snapshot) &&
        (await writtenReplicaDisk(replicas, pairs, new AbortController().signal)) === undefined;
      if (!intact) await replicas.ops.setOtherConfig(replica.$ref, { [OtherConfigKey.ReplicaBase]: "" });
      await connection.xapi.call("VM.remove_from_other_config", replica.$ref, OtherConfigKey.ReplicaUpdating);
      log.info(
        { replica: replica.uuid, intact },
        intact
          ? "a replica the interrupted run was updating is unchanged: kept as it is"
          : "a replica the interrupted run was updating was partly written: the next run replaces it",
      );
    } catch (error) {
      log.warn({ err: error, replica: replica.uuid }, "could not check a replica the interrupted run was updating; the next run checks it");
    }
  }
}
