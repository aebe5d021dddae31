/**
 * A SNAPSHOT restore point (a rolling snapshot on a pool) restores with `VM.copy` of the snapshot onto the target SR: full
 * disk copies, a new VM with new uuids; the snapshot and its VM are left as they are. Only within the snapshot's own pool
 * (XAPI copies inside a pool): the service refuses another pool before launching.
 */
import type { PoolConnection } from "../xapi/pool-connection.js";
import { describeXapiError } from "../xapi/pool-connection.js";

export async function copySnapshot(connection: PoolConnection, options: { snapshotUuid: string; name: string; srRef: string }): Promise<string> {
  const snapshot = connection.records("VM").find((vm) => vm.uuid === options.snapshotUuid && vm.is_a_snapshot === true);
  if (!snapshot) {
    throw new Error(`the snapshot ${options.snapshotUuid} is no longer on its pool (deleted by retention or by hand): pick another restore point`);
  }
  try {
    // The copy of a snapshot may come out as a template (XAPI's rule for clones of snapshots): the executor makes it a VM.
    return String(await connection.xapi.callAsync("VM.copy", snapshot.$ref, options.name, options.srRef));
  } catch (error) {
    throw new Error(`VM.copy of the snapshot failed: ${describeXapiError(error)}`, { cause: error });
  }
}
