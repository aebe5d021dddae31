import type { XapiRecord } from "./class-defaults.js";
import { register, type MethodTable } from "./rpc-method.js";
import { cloneVdi, createVbd, createVdi, destroyVbd, destroyVdi, resizeVdi, scanSr, snapshotVdi } from "./vdi-operations.js";
import { XapiFailure } from "./xapi-failure.js";

function recordArgument(value: unknown): XapiRecord {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new XapiFailure("FIELD_TYPE_ERROR", ["args"]);
  return value as XapiRecord;
}

/** VDI, VBD and SR methods of the spec's minimum list. */
export function registerStorageMethods(table: MethodTable): void {
  register(table, {
    "VDI.create": { params: ["args"], async: true, run: ({ pool }, [record]) => createVdi(pool, recordArgument(record)) },
    "VDI.snapshot": {
      params: ["vdi", "driver_params"],
      optional: 1,
      async: true,
      run: ({ pool }, [vdi]) => snapshotVdi(pool, vdi as string),
    },
    "VDI.clone": { params: ["vdi", "driver_params"], optional: 1, async: true, run: ({ pool }, [vdi]) => cloneVdi(pool, vdi as string) },
    "VDI.copy": {
      params: ["vdi", "sr", "base_vdi", "into_vdi"],
      optional: 3,
      async: true,
      cancellable: true,
      run: ({ pool }, [vdi, sr]) => cloneVdi(pool, vdi as string, { full: true, sr: sr as string }),
    },
    "VDI.destroy": { params: ["self"], async: true, run: ({ pool }, [vdi]) => destroyVdi(pool, vdi as string) },
    "VDI.resize": { params: ["vdi", "size"], async: true, run: ({ pool }, [vdi, size]) => resizeVdi(pool, vdi as string, size) },
    "VDI.get_nbd_info": { params: ["self"], run: ({ pool }, [vdi]) => (pool.store.get("VDI", vdi), []) },
    "VBD.create": { params: ["args"], async: true, run: ({ pool }, [record]) => createVbd(pool, recordArgument(record)) },
    "VBD.destroy": {
      params: ["self"],
      async: true,
      run: ({ pool }, [vbd]) => {
        if (pool.store.record("VBD", vbd).currently_attached === true) {
          throw new XapiFailure("OPERATION_NOT_ALLOWED", ["VBD is currently attached; unplug it first"]);
        }
        destroyVbd(pool, vbd as string);
      },
    },
    "VBD.plug": {
      params: ["self"],
      async: true,
      run: ({ pool }, [vbd]) => void pool.store.update("VBD", vbd, (r) => void (r.currently_attached = true)),
    },
    "VBD.unplug": {
      params: ["self"],
      async: true,
      run: ({ pool }, [vbd]) => void pool.store.update("VBD", vbd, (r) => void (r.currently_attached = false)),
    },
    "SR.scan": { params: ["sr"], async: true, run: ({ pool }, [sr]) => scanSr(pool, sr as string) },
  });
}
