/**
 * What an interrupted run (its process died) leaves behind, removed before the job runs again: the VM folder locks its
 * process held on the job's remotes, temporary files of its writes (the repository cleaner), and the snapshots it made and
 * did not finish (not marked exported, not recorded as a restore point), including one it made and died before tagging
 * (found by its name).
 */
import type { Db } from "../db/prisma.js";
import type { Logger } from "../log.js";
import { cleanRepository } from "../repository/cleaner.js";
import { processHolder, releaseLockOfDeadHolder } from "../repository/lock.js";
import type { RemoteService } from "../services/remote-service.js";
import { OtherConfigKey } from "../xapi/other-config-keys.js";
import type { PoolRegistry } from "../xapi/pool-registry.js";
import { VmOperations } from "../xapi/vm-operations.js";
import { runSnapshotMark } from "./take-snapshot.js";

interface InterruptedRun {
  id: string;
  jobId: string | null;
  workerId: string | null;
}

export function createInterruptedRunCleanup(deps: { db: Db; registry: PoolRegistry; remotes: RemoteService; log: Logger }) {
  return async (run: InterruptedRun): Promise<void> => {
    const log = deps.log.child({ runId: run.id });
    const row = await deps.db.run.findUnique({ where: { id: run.id }, select: { vmUuids: true } });
    const vmUuids = row?.vmUuids ?? [];
    // workerId is `<host>/<pid>/<random>`: the dead process's lock holder name derives from it.
    const [host, pid] = (run.workerId ?? "").split("/");
    const holder = host && pid ? processHolder(host, Number(pid)) : undefined;

    if (run.jobId) {
      const links = await deps.db.jobRemote.findMany({ where: { jobId: run.jobId }, include: { remote: true } });
      for (const { remote: remoteRow } of links) {
        const remote = deps.remotes.open(remoteRow);
        try {
          await remote.open();
          for (const vmUuid of vmUuids) {
            if (holder && (await releaseLockOfDeadHolder(remote, vmUuid, holder))) log.info({ vmUuid, remote: remoteRow.name }, "released the lock of the interrupted run");
            // minAgeMs 0: the writer is known dead, its temporary files cannot be in use.
            const result = await cleanRepository(remote, { vmUuid, minAgeMs: 0 });
            if (result.deletedFiles.length) log.info({ vmUuid, remote: remoteRow.name, files: result.deletedFiles }, "removed what the interrupted run left");
          }
        } catch (error) {
          log.warn({ err: error, remote: remoteRow.name }, "could not clean a remote after an interrupted run; the next run retries");
        } finally {
          await remote.close().catch(() => undefined);
        }
      }
    }

    const recorded = new Set(
      (await deps.db.restorePoint.findMany({ where: { runId: run.id, kind: "SNAPSHOT" }, select: { objectUuid: true } })).map((r) => r.objectUuid),
    );
    for (const connection of deps.registry.all()) {
      if (connection.status !== "CONNECTED") continue;
      const ops = new VmOperations(connection);
      for (const snapshot of ops.snapshotsOfRun(run.id, runSnapshotMark(run.id))) {
        const config = snapshot.other_config as Record<string, string>;
        if (config[OtherConfigKey.BackupExported] === "true" || recorded.has(snapshot.uuid)) continue;
        await ops.destroySnapshot(snapshot.$ref).then(
          () => log.info({ snapshot: snapshot.uuid }, "removed a snapshot of the interrupted run"),
          (error) => log.warn({ err: error, snapshot: snapshot.uuid }, "could not remove a snapshot of the interrupted run"),
        );
      }
    }
  };
}
