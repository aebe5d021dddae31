/**
 * Marks the VMs an XAPI import creates, as soon as they exist, with the run that imports them ({@link OtherConfigKey.ImportRun}).
 *
 * XAPI creates the VM (and its disks) when it has read the XVA's `ova.xml`, long before the import ends and answers the new
 * refs; meanwhile the VM carries the import task in its `current_operations`. Watching the client's cache for that task is how
 * a process that dies mid-import leaves a VM that its run can be found by (the interrupted-run cleanup destroys it). A kill in
 * the short moment between XAPI creating the VM and the mark being written leaves it unmarked.
 */
import { OtherConfigKey } from "./other-config-keys.js";
import type { PoolConnection } from "./pool-connection.js";
import { describeXapiError } from "./pool-connection.js";

export interface ImportMarker {
  /** Refs of the VMs seen being created by the task, in order. */
  readonly seen: string[];
  /** Stops watching and waits for the marks under way; @returns what could not be marked (a VM XAPI already undid, mostly). */
  stop(): Promise<string[]>;
}

export function markImportedVms(connection: PoolConnection, taskRef: string, runId: string, onVm?: (ref: string) => void): ImportMarker {
  const seen: string[] = [];
  const pending: Promise<unknown>[] = [];
  const problems: string[] = [];
  const check = () => {
    for (const vm of connection.records("VM")) {
      const operations = (vm.current_operations as Record<string, string> | undefined) ?? {};
      if (operations[taskRef] === undefined || seen.includes(vm.$ref)) continue;
      seen.push(vm.$ref);
      onVm?.(vm.$ref);
      pending.push(
        (async () => {
          await connection.xapi.call("VM.remove_from_other_config", vm.$ref, OtherConfigKey.ImportRun);
          await connection.xapi.call("VM.add_to_other_config", vm.$ref, OtherConfigKey.ImportRun, runId);
        })().catch((error: unknown) => problems.push(`${vm.$ref}: ${describeXapiError(error)}`)),
      );
    }
  };
  connection.on("objects", check);
  check();
  return {
    seen,
    async stop() {
      connection.off("objects", check);
      await Promise.all(pending);
      return problems;
    },
  };
}
