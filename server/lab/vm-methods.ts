import type { LabPool } from "./pool-state.js";
import { register, type MethodTable } from "./rpc-method.js";
import { assertVmOperation, cloneVm, destroyVm, type PowerState, setPowerState, snapshotVm, startVm } from "./vm-operations.js";
import { XapiFailure } from "./xapi-failure.js";

/** A power transition after XAPI's checks for `operation`. */
function transition(pool: LabPool, vm: unknown, operation: string, to: PowerState): void {
  assertVmOperation(pool, String(vm), operation);
  setPowerState(pool, String(vm), to);
}

/**
 * The VM methods of the spec's minimum list (snapshots, clones, copies, power, destroy), with the datamodel's parameters
 * (datamodel_vm.ml). `cancellable`: the ones XAPI marks cancellable as they start (`TaskHelper.set_cancellable` in
 * xapi_vm.ml's snapshot, clone, checkpoint, the disk copies of copy; xenopsd's tasks for the power operations).
 */
export function registerVmMethods(table: MethodTable): void {
  register(table, {
    "VM.snapshot": {
      params: ["vm", "new_name", "ignore_vdis"],
      optional: 1,
      async: true,
      cancellable: true,
      run: ({ pool, task }, [vm, name, ignore]) => snapshotVm(pool, vm as string, name, ignore, "snapshot", task),
    },
    "VM.snapshot_with_quiesce": {
      params: ["vm", "new_name"],
      async: true,
      cancellable: true,
      run: ({ pool, task }, [vm, name]) => {
        const record = pool.store.record("VM", vm);
        if (pool.faults.state.quiesce === "not_supported") {
          throw new XapiFailure("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", [String(vm)]);
        }
        if (record.power_state !== "Running")
          throw new XapiFailure("VM_BAD_POWER_STATE", [String(vm), "running", String(record.power_state).toLowerCase()]);
        return snapshotVm(pool, vm as string, name, [], "quiesced", task);
      },
    },
    "VM.checkpoint": {
      params: ["vm", "new_name"],
      async: true,
      cancellable: true,
      run: ({ pool, task }, [vm, name]) => snapshotVm(pool, vm as string, name, [], "checkpoint", task),
    },
    "VM.clone": {
      params: ["vm", "new_name"],
      async: true,
      cancellable: true,
      run: ({ pool, task }, [vm, name]) => cloneVm(pool, vm as string, name, { full: false }, task),
    },
    "VM.copy": {
      params: ["vm", "new_name", "sr"],
      async: true,
      cancellable: true,
      run: ({ pool, task }, [vm, name, sr]) => cloneVm(pool, vm as string, name, { full: true, sr: sr as string }, task),
    },
    "VM.destroy": { params: ["self"], async: true, run: ({ pool }, [vm]) => destroyVm(pool, vm as string) },
    "VM.start": {
      params: ["vm", "start_paused", "force"],
      async: true,
      cancellable: true,
      run: ({ pool }, [vm, paused]) => startVm(pool, vm as string, paused),
    },
    "VM.hard_shutdown": {
      params: ["vm"],
      async: true,
      cancellable: true,
      run: ({ pool }, [vm]) => transition(pool, vm, "hard_shutdown", "Halted"),
    },
    "VM.clean_shutdown": {
      params: ["vm"],
      async: true,
      cancellable: true,
      run: ({ pool }, [vm]) => transition(pool, vm, "clean_shutdown", "Halted"),
    },
    "VM.suspend": {
      params: ["vm"],
      async: true,
      cancellable: true,
      run: ({ pool }, [vm]) => transition(pool, vm, "suspend", "Suspended"),
    },
    "VM.resume": {
      params: ["vm", "start_paused", "force"],
      async: true,
      cancellable: true,
      run: ({ pool }, [vm, paused]) => transition(pool, vm, "resume", paused === true ? "Paused" : "Running"),
    },
    "VM.pause": { params: ["vm"], async: true, cancellable: true, run: ({ pool }, [vm]) => transition(pool, vm, "pause", "Paused") },
    "VM.unpause": { params: ["vm"], async: true, cancellable: true, run: ({ pool }, [vm]) => transition(pool, vm, "unpause", "Running") },
  });
}
