/**
 * SNAPSHOT and REPLICA restore points (a rolling snapshot, a DR replica or a CR replica's snapshot, all on a pool) restore
 * with `VM.copy` onto the target SR: full disk copies, a new VM with new uuids; the snapshot or replica is left as it is.
 * Only within its own pool (XAPI copies inside a pool): the service refuses another pool before launching.
 */
import type { PoolConnection } from "../../xapi/pool-connection.js";
import { describeXapiError } from "../../xapi/pool-connection.js";
import { VmOperations } from "../../xapi/vm-operations.js";

export async function copyPoolCopy(connection: PoolConnection, options: { uuid: string; name: string; srRef: string }): Promise<string> {
  const snapshot = connection.records("VM").find((vm) => vm.uuid === options.uuid);
  if (!snapshot) {
    throw new Error(
      `the snapshot or replica ${options.uuid} is no longer on its pool (deleted by retention or by hand): pick another restore point`,
    );
  }
  if (!snapshot.is_a_snapshot && snapshot.power_state !== "Halted") {
    throw new Error(
      `the replica ${String(snapshot.name_label)} is ${String(snapshot.power_state)} (someone started it): it can only be copied halted; shut it down or pick another restore point`,
    );
  }
  try {
    // The copy of a snapshot may come out as a template (XAPI's rule for clones of snapshots): the executor makes it a VM.
    return await new VmOperations(connection).copy(snapshot.$ref, options.name, options.srRef);
  } catch (error) {
    throw new Error(`VM.copy of the snapshot failed: ${describeXapiError(error)}`, { cause: error });
  }
}
