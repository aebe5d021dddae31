/**
 * The XAPI calls of the CBT + NBD backup path (all published in XenServer 7.3 "inverness", API 2.8): `VDI.enable_cbt`,
 * `VDI.list_changed_blocks`, `VDI.get_nbd_info`, `VDI.data_destroy`. See README.md beside this file and
 * server/lab/NBD.md for what XAPI answers.
 */
import type { PoolConnection, XapiRecord } from "../pool-connection.js";
import { xapiErrorCode } from "../pool-connection.js";
import type { NbdTarget } from "./nbd-connection.js";

/** XAPI's changed block size: one bit of `list_changed_blocks` per 64 KiB. */
export const CBT_BLOCK_SIZE = 64 * 1024;

export class CbtOperations {
  constructor(private readonly connection: PoolConnection) {}

  private get xapi() {
    return this.connection.xapi;
  }

  /** The VDI record by uuid from the client's cache. */
  vdiByUuid(uuid: string): XapiRecord | undefined {
    return this.connection.records("VDI").find((vdi) => vdi.uuid === uuid);
  }

  /** Turns CBT on (idempotent on XAPI's side). */
  async enable(vdiRef: string): Promise<void> {
    await this.xapi.callAsync("VDI.enable_cbt", vdiRef);
  }

  /** The bitmap of 64 KiB blocks changed from `fromRef` (an older snapshot) to `toRef`: bit i is 0x80 >> (i % 8) of byte i / 8. */
  async changedBlocks(fromRef: string, toRef: string): Promise<Buffer> {
    return Buffer.from(String(await this.xapi.call("VDI.list_changed_blocks", fromRef, toRef)), "base64");
  }

  /**
   * Where the VDI can be read over NBD; empty when no network of the pool has an NBD purpose. xapi-nbd decides TLS for the
   * whole pool (`ocaml/nbd/src/main.ml`): TLS when a network has the purpose `nbd`, plain for `insecure_nbd`; so the
   * certificate XAPI hands out (it always does) is pinned only in the first case.
   */
  async nbdTargets(vdiRef: string): Promise<NbdTarget[]> {
    const infos = (await this.xapi.call("VDI.get_nbd_info", vdiRef)) as Array<Record<string, unknown>>;
    const tls = this.connection.records("network").some((network) => ((network.purpose as string[] | undefined) ?? []).includes("nbd"));
    return infos.map((info) => ({
      address: String(info.address),
      port: Number(info.port),
      exportName: String(info.exportname),
      ...(tls && typeof info.cert === "string" && info.cert !== "" ? { cert: info.cert } : {}),
    }));
  }

  /** Destroys a VBD (data_destroy refuses a VDI that still has one, even the unplugged VBD of a VM snapshot). */
  async destroyVbd(vbdRef: string): Promise<void> {
    try {
      await this.xapi.call("VBD.destroy", vbdRef);
    } catch (error) {
      if (xapiErrorCode(error) !== "HANDLE_INVALID") throw error;
    }
  }

  /** Deletes a CBT snapshot's data, keeping its CBT metadata (type becomes cbt_metadata). */
  async dataDestroy(vdiRef: string): Promise<void> {
    await this.xapi.callAsync("VDI.data_destroy", vdiRef);
  }

  /** Destroys a VDI; one already gone is no error. */
  async destroyVdi(vdiRef: string): Promise<void> {
    try {
      await this.xapi.call("VDI.destroy", vdiRef);
    } catch (error) {
      if (xapiErrorCode(error) !== "HANDLE_INVALID") throw error;
    }
  }
}

/**
 * The 2 MiB blocks (VHD blocks) holding any changed 64 KiB block of `bitmap`, sorted, below the disk's block count.
 * @returns the indexes and how many 64 KiB blocks changed.
 */
export function changedVhdBlocks(bitmap: Buffer, virtualSize: number, vhdBlockSize: number): { indexes: number[]; changed64k: number } {
  const perBlock = vhdBlockSize / CBT_BLOCK_SIZE;
  const blockCount = Math.ceil(virtualSize / vhdBlockSize);
  const indexes = new Set<number>();
  let changed64k = 0;
  for (let byte = 0; byte < bitmap.length; byte++) {
    const value = bitmap[byte];
    if (value === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      if ((value & (0x80 >> bit)) === 0) continue;
      const index = Math.floor((byte * 8 + bit) / perBlock);
      if (index >= blockCount) continue;
      changed64k++;
      indexes.add(index);
    }
  }
  return { indexes: [...indexes].sort((a, b) => a - b), changed64k };
}
