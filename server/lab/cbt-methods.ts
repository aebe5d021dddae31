/**
 * `VDI.enable_cbt`, `disable_cbt`, `set_cbt_enabled`, `list_changed_blocks`, `data_destroy` and `get_nbd_info`, with the
 * checks and errors of XAPI's `xapi_vdi.ml` (`check_operation_error`, `_data_destroy`, `_get_nbd_info`) and SM's
 * `VDI.py` (`list_changed_blocks`, error 460), at `xapi-project/xen-api` e2ee48d6883e. See cbt-state.ts for how the lab
 * tracks changes.
 */
import type { XapiRecord } from "./class-defaults.js";
import { cbtStateOf, type FrozenCbtLog } from "./cbt-state.js";
import { DISK_BLOCK_SIZE } from "./disk-store.js";
import { nbdEndpointOf } from "./nbd-server.js";
import type { LabPool } from "./pool-state.js";
import { register, type MethodTable } from "./rpc-method.js";
import { XapiFailure } from "./xapi-failure.js";
import { NULL_REF } from "./xapi-values.js";

/** XAPI's changed block size: one bit of `list_changed_blocks` per 64 KiB. */
export const CBT_BLOCK_SIZE = 64 * 1024;

/** SM's `CBTChangedBlocksError` (XE_SR_ERRORCODES.xml 460), as XAPI passes a backend error on. */
function changedBlocksError(detail: string): XapiFailure {
  return new XapiFailure("SR_BACKEND_FAILURE_460", ["", `Failed to calculate changed blocks for given VDIs. [opterr=${detail}]`, ""]);
}

function vdiRecord(pool: LabPool, ref: unknown): XapiRecord {
  return pool.store.record("VDI", ref);
}

/** `check_operation_error`: what a cbt_metadata VDI refuses, then SR support. */
function assertNotMetadata(ref: string, record: XapiRecord): void {
  if (record.type === "cbt_metadata") throw new XapiFailure("VDI_INCOMPATIBLE_TYPE", [ref, "cbt_metadata"]);
}

function assertSrSupportsCbt(pool: LabPool, record: XapiRecord): void {
  const sr = pool.store.record("SR", record.SR);
  // The ISO library is not a VHD SR: SM does not advertise VDI_CONFIG_CBT for it.
  if (sr.content_type === "iso") throw new XapiFailure("SR_OPERATION_NOT_SUPPORTED", [String(record.SR)]);
}

/** `enable_cbt` / `disable_cbt` checks, in XAPI's order. */
function assertCbtConfigurable(pool: LabPool, ref: string): XapiRecord {
  const record = vdiRecord(pool, ref);
  assertNotMetadata(ref, record);
  assertSrSupportsCbt(pool, record);
  if (record.is_a_snapshot === true) throw new XapiFailure("OPERATION_NOT_ALLOWED", [`VDI is a snapshot: ${ref}`]);
  if (record.type !== "user" && record.type !== "system") throw new XapiFailure("VDI_INCOMPATIBLE_TYPE", [ref, String(record.type)]);
  if (record.on_boot === "reset") throw new XapiFailure("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", []);
  return record;
}

function isAttached(pool: LabPool, vbd: string): boolean {
  return pool.store.has("VBD", vbd) && pool.store.record("VBD", vbd).currently_attached === true;
}

/** A snapshot's log as `list_changed_blocks` reads it: its disk while it has data, what data_destroy kept afterwards. */
function logOf(pool: LabPool, record: XapiRecord, frozen: FrozenCbtLog | undefined): FrozenCbtLog {
  if (frozen !== undefined) return frozen;
  const blocks = [...pool.disks.blockGenerations(record.location as string)];
  return { maxGeneration: blocks.reduce((max, [, generation]) => Math.max(max, generation), 0), blocks };
}

async function listChangedBlocks(pool: LabPool, fromRef: string, toRef: string): Promise<string> {
  const from = pool.store.get("VDI", fromRef);
  const to = pool.store.get("VDI", toRef);
  // XAPI: not allowed while vdi_to is attached to a VM, unless that VM is a snapshot.
  const attachedToVm = (to.record.VBDs as string[]).some(
    (vbd) => isAttached(pool, vbd) && pool.store.record("VM", pool.store.record("VBD", vbd).VM).is_a_snapshot !== true,
  );
  if (attachedToVm) throw new XapiFailure("VDI_IN_USE", [toRef, "list_changed_blocks"]);
  if (from.record.uuid === to.record.uuid) throw changedBlocksError("Source and target VDI are same");
  const state = await cbtStateOf(pool);
  const unrelated = changedBlocksError("Source and target VDI are unrelated");
  if (from.record.cbt_enabled !== true || to.record.cbt_enabled !== true) throw unrelated;
  // The chain's live VDI: SM follows the logs from vdi_from towards the leaf, so vdi_from must be an older snapshot.
  if (from.record.is_a_snapshot !== true) throw unrelated;
  const leaf = from.record.snapshot_of as string;
  const toLeaf = to.record.is_a_snapshot === true ? (to.record.snapshot_of as string) : toRef;
  if (leaf === NULL_REF || leaf !== toLeaf || !pool.store.has("VDI", leaf)) throw unrelated;
  const chainStart = state.chainStart(String(pool.store.record("VDI", leaf).uuid));
  if (chainStart === undefined || from.created < chainStart) throw unrelated;
  if (to.record.is_a_snapshot === true && to.created < chainStart) throw unrelated;
  const fromLog = logOf(pool, from.record, state.frozenLog(String(from.record.uuid)));
  const toLog =
    to.record.is_a_snapshot === true ? logOf(pool, to.record, state.frozenLog(String(to.record.uuid))) : logOf(pool, to.record, undefined);
  if (to.record.is_a_snapshot === true && (to.created < from.created || toLog.maxGeneration < fromLog.maxGeneration)) throw unrelated;

  const virtualSize = Number(to.record.virtual_size);
  const bits = Math.ceil(virtualSize / CBT_BLOCK_SIZE);
  const bitmap = Buffer.alloc(Math.ceil(bits / 8));
  const perBlock = DISK_BLOCK_SIZE / CBT_BLOCK_SIZE;
  for (const [index, generation] of toLog.blocks) {
    if (generation <= fromLog.maxGeneration) continue;
    for (let bit = index * perBlock; bit < Math.min(bits, (index + 1) * perBlock); bit++) {
      // SM answers `bitarray.tobytes()` of a big-endian bitarray: bit i is the most significant bit first of byte i / 8.
      bitmap[bit >> 3] |= 0x80 >> (bit & 7);
    }
  }
  return bitmap.toString("base64");
}

async function dataDestroy(pool: LabPool, ref: string): Promise<void> {
  const record = vdiRecord(pool, ref);
  if (record.type === "cbt_metadata") return; // idempotent, as XAPI
  assertSrSupportsCbt(pool, record);
  if (record.is_a_snapshot !== true) throw new XapiFailure("OPERATION_NOT_ALLOWED", [`VDI is not a snapshot: ${ref}`]);
  if (record.cbt_enabled !== true) throw new XapiFailure("VDI_NO_CBT_METADATA", [ref]);
  // XAPI waits up to 4 s for every VBD of the VDI to be destroyed (wait_for_vbds_to_be_unplugged_and_destroyed), then
  // refuses: a VM snapshot's unplugged VBD counts too, so clients destroy the VBDs (or the snapshot VM) first. The lab
  // does not wait: nothing destroys VBDs behind a client's back here.
  const vbds = (record.VBDs as string[]).filter((vbd) => pool.store.has("VBD", vbd));
  if (vbds.length > 0) throw new XapiFailure("VDI_IN_USE", [ref, "data_destroy"]);
  const state = await cbtStateOf(pool);
  const location = record.location as string;
  state.freeze(String(record.uuid), logOf(pool, record, undefined));
  // The data goes; an empty disk stays under the location so that VDI.destroy still finds one.
  await pool.disks.destroy(location);
  await pool.disks.create(location, 0);
  pool.store.update("VDI", ref, (target) => {
    target.type = "cbt_metadata";
    target.physical_utilisation = 0;
    target.other_config = { ...(target.other_config as Record<string, string>), content_id: "/No content: this is a cbt_metadata VDI/" };
  });
}

/**
 * `_get_nbd_info`: one record per NBD server of a network with an NBD purpose. Purpose `nbd` (TLS) counts only when the
 * lab has a certificate; the record then carries it (XAPI: the host's certificate, for the client to pin). For
 * `insecure_nbd` the lab leaves `cert` empty (XAPI fills it in either way), so that a client can tell plain from TLS.
 */
function nbdInfo(pool: LabPool, session: string, ref: string): XapiRecord[] {
  const record = vdiRecord(pool, ref);
  assertNotMetadata(ref, record);
  const endpoint = nbdEndpointOf(pool);
  const purposes = new Set(pool.store.all("network").flatMap((network) => network.record.purpose as string[]));
  const tls = purposes.has("nbd") && endpoint?.cert !== undefined;
  if (endpoint === undefined || (!tls && !purposes.has("insecure_nbd"))) return [];
  const host = pool.store.record("host", pool.hostRef);
  return [
    {
      exportname: `/${String(record.uuid)}?session_id=${session}`,
      address: endpoint.address,
      port: endpoint.port,
      cert: tls ? endpoint.cert : "",
      subject: String(host.hostname || host.name_label),
    },
  ];
}

export function registerCbtMethods(table: MethodTable): void {
  register(table, {
    "VDI.enable_cbt": {
      params: ["self"],
      async: true,
      run: async ({ pool }, [vdi]) => {
        const record = assertCbtConfigurable(pool, vdi as string);
        if (record.cbt_enabled === true) return;
        (await cbtStateOf(pool)).startChain(String(record.uuid), pool.store.generation + 1);
        pool.store.update("VDI", vdi, (target) => void (target.cbt_enabled = true));
      },
    },
    "VDI.disable_cbt": {
      params: ["self"],
      async: true,
      run: async ({ pool }, [vdi]) => {
        const record = assertCbtConfigurable(pool, vdi as string);
        if (record.cbt_enabled !== true) return;
        (await cbtStateOf(pool)).endChain(String(record.uuid));
        pool.store.update("VDI", vdi, (target) => void (target.cbt_enabled = false));
      },
    },
    "VDI.list_changed_blocks": {
      params: ["vdi_from", "vdi_to"],
      async: true,
      run: ({ pool }, [from, to]) => listChangedBlocks(pool, from as string, to as string),
    },
    "VDI.data_destroy": { params: ["self"], async: true, run: ({ pool }, [vdi]) => dataDestroy(pool, vdi as string) },
    "VDI.get_nbd_info": { params: ["self"], run: ({ pool, session }, [vdi]) => nbdInfo(pool, session, vdi as string) },
  });
}
