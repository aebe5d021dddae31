/**
 * The composition of a lab pool: the state (pool-state.ts) and the XAPI methods over it (the `register*` files). Only
 * lab.ts imports this file; the method files import the state, never this.
 */
import { registerCbtMethods } from "./cbt-methods.js";
import { registerCoreMethods } from "./core-methods.js";
import { keepDatamodelInvariants } from "./datamodel-upkeep.js";
import { registerGenericMethods } from "./generic-methods.js";
import { registerLabMethods } from "./lab-methods.js";
import { LabPool, type LabPoolOptions } from "./pool-state.js";
import type { MethodTable } from "./rpc-method.js";
import { seedPool } from "./seed-pool.js";
import { registerStorageMethods } from "./storage-methods.js";
import { registerVmMethods } from "./vm-methods.js";

/** Opens the pool in `options.dir`: the saved state when there is one, otherwise a freshly seeded pool. */
export async function openLabPool(options: LabPoolOptions): Promise<LabPool> {
  const pool = new LabPool(options);
  if (!(await pool.load())) {
    await seedPool(
      pool,
      { name: options.poolName, hostAddress: options.hostAddress, seed: options.seed, diskSizeBytes: options.diskSizeBytes },
      options.log,
    );
  }
  pool.updateHostAddress(options.hostAddress);
  keepDatamodelInvariants(pool);
  pool.saveChanges();
  return pool;
}

/** Every XAPI method the lab answers (besides `session.login_with_password` and `system.listMethods`), by name. */
export function createMethodTable(): MethodTable {
  const methods: MethodTable = new Map();
  registerGenericMethods(methods);
  registerCoreMethods(methods);
  registerVmMethods(methods);
  registerStorageMethods(methods);
  registerLabMethods(methods);
  registerCbtMethods(methods); // after the storage methods: replaces their empty VDI.get_nbd_info
  return methods;
}
