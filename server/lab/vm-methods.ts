import { register, type MethodTable } from "./rpc-method.js";
import { checkPowerState, cloneVm, destroyVm, setPowerState, snapshotVm, startVm } from "./vm-operations.js";
import { XapiFailure } from "./xapi-failure.js";

/** The VM methods of the spec's minimum list (snapshots, clones, copies, power, destroy). */
export function registerVmMethods(table: MethodTable): void {
  register(table, {
    "VM.snapshot": {
      params: ["vm", "new_name", "ignore_vdis"],
      optional: 1,
      async: true,
      run: ({ pool }, [vm, name, ignore]) => snapshotVm(pool, vm as string, name, ignore, "snapshot"),
    },
    "VM.snapshot_with_quiesce": {
      params: ["vm", "new_name"],
      async: true,
      run: ({ pool }, [vm, name]) => {
        const record = pool.store.record("VM", vm);
        if (pool.faults.state.quiesce === "not_supported") {
          throw new XapiFailure("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", [String(vm)]);
        }
        if (record.power_state !== "Running")
          throw new XapiFailure("VM_BAD_POWER_STATE", [String(vm), "running", String(record.power_state).toLowerCase()]);
        return snapshotVm(pool, vm as string, name, [], "quiesced");
      },
    },
    "VM.checkpoint": {
      params: ["vm", "new_name"],
      async: true,
      run: ({ pool }, [vm, name]) => snapshotVm(pool, vm as string, name, [], "checkpoint"),
    },
    "VM.clone": {
      params: ["vm", "new_name"],
      async: true,
      run: ({ pool }, [vm, name]) => cloneVm(pool, vm as string, name, { full: false }),
    },
    "VM.copy": {
      params: ["vm", "new_name", "sr"],
      async: true,
      run: ({ pool }, [vm, name, sr]) => cloneVm(pool, vm as string, name, { full: true, sr: sr as string }),
    },
    "VM.destroy": { params: ["self"], async: true, run: ({ pool }, [vm]) => destroyVm(pool, vm as string) },
    "VM.start": {
      params: ["vm", "start_paused", "force"],
      async: true,
      run: ({ pool }, [vm, paused]) => startVm(pool, vm as string, paused),
    },
    "VM.hard_shutdown": {
      params: ["vm"],
      async: true,
      run: ({ pool }, [vm]) => {
        checkPowerState(pool, vm as string, ["Running", "Paused", "Suspended"]);
        setPowerState(pool, vm as string, "Halted");
      },
    },
    "VM.clean_shutdown": {
      params: ["vm"],
      async: true,
      run: ({ pool }, [vm]) => {
        checkPowerState(pool, vm as string, ["Running"]);
        setPowerState(pool, vm as string, "Halted");
      },
    },
    "VM.suspend": {
      params: ["vm"],
      async: true,
      run: ({ pool }, [vm]) => {
        checkPowerState(pool, vm as string, ["Running"]);
        setPowerState(pool, vm as string, "Suspended");
      },
    },
    "VM.resume": {
      params: ["vm", "start_paused", "force"],
      async: true,
      run: ({ pool }, [vm, paused]) => {
        checkPowerState(pool, vm as string, ["Suspended"]);
        setPowerState(pool, vm as string, paused === true ? "Paused" : "Running");
      },
    },
    "VM.pause": {
      params: ["vm"],
      async: true,
      run: ({ pool }, [vm]) => {
        checkPowerState(pool, vm as string, ["Running"]);
        setPowerState(pool, vm as string, "Paused");
      },
    },
    "VM.unpause": {
      params: ["vm"],
      async: true,
      run: ({ pool }, [vm]) => {
        checkPowerState(pool, vm as string, ["Paused"]);
        setPowerState(pool, vm as string, "Running");
      },
    },
  });
}
