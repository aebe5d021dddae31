import { resetCbtChains } from "./cbt-state.js";
import { DISK_BLOCK_SIZE } from "./disk-store.js";
import type { LabPool } from "./pool-state.js";
import { register, type MethodTable } from "./rpc-method.js";
import { seededBytes, SeededRandom } from "./seeded-random.js";
import { refreshUtilisation } from "./vdi-operations.js";
import { XapiFailure } from "./xapi-failure.js";

/** The most `lab.read_vdi` returns in one call (base64 in a JSON response). */
export const LAB_READ_LIMIT = 64 * 1024 * 1024;

function integer(value: unknown, name: string): number {
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 0) {
    throw new XapiFailure("INVALID_VALUE", [name, String(value)]);
  }
  return number;
}

function diskOf(pool: LabPool, vdi: unknown): string {
  return pool.store.record("VDI", vdi).location as string;
}

/** Lab-only controls, callable through the same client (`xapi.call("lab.scribble", vdi, 3, "seed")`). */
export function registerLabMethods(table: MethodTable): void {
  register(table, {
    "lab.write_vdi": {
      params: ["vdi", "offset", "data_base64"],
      async: true,
      run: async ({ pool }, [vdi, offset, data]) => {
        if (typeof data !== "string") throw new XapiFailure("FIELD_TYPE_ERROR", ["data_base64"]);
        await pool.disks.write(diskOf(pool, vdi), integer(offset, "offset"), Buffer.from(data, "base64"));
        refreshUtilisation(pool, vdi as string);
      },
    },
    "lab.read_vdi": {
      params: ["vdi", "offset", "length"],
      run: async ({ pool }, [vdi, offset, length]) => {
        const bytes = integer(length, "length");
        if (bytes > LAB_READ_LIMIT) throw new XapiFailure("INVALID_VALUE", ["length", `${bytes} (at most ${LAB_READ_LIMIT})`]);
        return (await pool.disks.read(diskOf(pool, vdi), integer(offset, "offset"), bytes)).toString("base64");
      },
    },
    "lab.scribble": {
      params: ["vdi", "blocks", "seed"],
      async: true,
      run: async ({ pool }, [vdi, blocks, seed]) => {
        const disk = diskOf(pool, vdi);
        const size = pool.disks.virtualSize(disk);
        const blockCount = Math.ceil(size / DISK_BLOCK_SIZE);
        const chosen = new SeededRandom(String(seed)).distinct(integer(blocks, "blocks"), blockCount);
        for (const index of chosen) {
          const length = Math.min(DISK_BLOCK_SIZE, size - index * DISK_BLOCK_SIZE);
          await pool.disks.write(disk, index * DISK_BLOCK_SIZE, seededBytes(String(seed), `scribble:${index}`, length));
        }
        refreshUtilisation(pool, vdi as string);
        return chosen;
      },
    },
    "lab.vdi_sha256": { params: ["vdi"], async: true, run: ({ pool }, [vdi]) => pool.disks.sha256(diskOf(pool, vdi)) },
    "lab.vdi_blocks": { params: ["vdi"], run: ({ pool }, [vdi]) => pool.disks.allocatedBlocks(diskOf(pool, vdi)) },
    "lab.set_fault": {
      params: ["name", "params"],
      optional: 1,
      run: async ({ pool }, [name, params]) => {
        pool.faults.set(String(name), params ?? {});
        if (name === "cbt_reset") await resetCbtChains(pool);
        if (name === "host_unreachable") {
          pool.emit("unreachable");
          const wait = Math.max(0, (pool.faults.state.unreachableUntil ?? 0) - Date.now());
          setTimeout(() => pool.emit("reachable"), wait).unref();
        }
        if (name === "session_invalid") pool.sessions.invalidateAll();
      },
    },
    "lab.clear_faults": { params: [], run: ({ pool }) => pool.faults.clear() },
  });
}
