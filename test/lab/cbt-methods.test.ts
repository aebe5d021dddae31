import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { createLabFixture, diskOf, vmNamed, type LabFixture } from "./lab-fixture.js";

const MIB = 1024 * 1024;
const BLOCK = 2 * MIB;
const CBT_BLOCK = 64 * 1024;

/** The 2 MiB blocks a bitmap marks (XO's reading: any of the 32 bits of 64 KiB set). */
function changedVhdBlocks(bitmap: Buffer): number[] {
  const blocks: number[] = [];
  for (let index = 0; index * 4 < bitmap.length; index++) {
    if (bitmap.subarray(index * 4, index * 4 + 4).some((byte) => byte !== 0)) blocks.push(index);
  }
  return blocks;
}

async function changedBlocks(xapi: Xapi, from: string, to: string): Promise<Buffer> {
  return Buffer.from(await xapi.call<string>("VDI.list_changed_blocks", from, to), "base64");
}

describe("the lab's changed block tracking (VDI.enable_cbt, list_changed_blocks, data_destroy)", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("lists the blocks written between two snapshots, keeps that knowledge after data_destroy", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
    await xapi.call("VDI.enable_cbt", vdi);
    expect(await xapi.call("VDI.get_cbt_enabled", vdi)).toBe(true);
    await xapi.call("VDI.enable_cbt", vdi); // idempotent
    const first = await xapi.call<string>("VDI.snapshot", vdi, {});
    expect(await xapi.call("VDI.get_cbt_enabled", first)).toBe(true);
    const written = await xapi.call<number[]>("lab.scribble", vdi, 2, "cbt");
    const second = await xapi.call<string>("VDI.snapshot", vdi, {});

    const bitmap = await changedBlocks(xapi, first, second);
    const size = Number(await xapi.call("VDI.get_virtual_size", vdi));
    expect(bitmap.length).toBe(Math.ceil(size / CBT_BLOCK / 8));
    expect(changedVhdBlocks(bitmap)).toEqual([...written].sort((a, b) => a - b));
    for (const index of written) expect([...bitmap.subarray(index * 4, index * 4 + 4)]).toEqual([0xff, 0xff, 0xff, 0xff]);
    // Against the live VDI too, and nothing changed since the second snapshot.
    expect(changedVhdBlocks(await changedBlocks(xapi, second, vdi))).toEqual([]);

    await xapi.call("VDI.data_destroy", first);
    expect(await xapi.call("VDI.get_type", first)).toBe("cbt_metadata");
    expect(await xapi.call("VDI.get_cbt_enabled", first)).toBe(true);
    expect(await xapi.call("lab.vdi_blocks", first)).toEqual([]);
    await xapi.call("VDI.data_destroy", first); // idempotent on cbt_metadata
    expect(await changedBlocks(xapi, first, second)).toEqual(bitmap);

    await expect(xapi.call("VDI.get_nbd_info", first)).rejects.toMatchObject({
      code: "VDI_INCOMPATIBLE_TYPE",
      params: [first, "cbt_metadata"],
    });
    await expect(xapi.call("VDI.snapshot", first, {})).resolves.toBeDefined(); // the lab's VDI.snapshot has no type check
    await xapi.call("VDI.destroy", first); // a cbt_metadata VDI can still be destroyed
  });

  it("keeps CBT chains and data_destroyed logs across a lab restart", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cairn-lab-cbt-"));
    let own = await createLabFixture({ dir });
    try {
      let xapi = await own.connect();
      const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
      await xapi.call("VDI.enable_cbt", vdi);
      const first = await xapi.call<string>("VDI.snapshot", vdi, {});
      const written = await xapi.call<number[]>("lab.scribble", vdi, 1, "restart");
      const second = await xapi.call<string>("VDI.snapshot", vdi, {});
      await xapi.call("VDI.data_destroy", first);
      const before = await changedBlocks(xapi, first, second);
      await own.dispose();
      own = await createLabFixture({ dir });
      xapi = await own.connect();
      expect(await changedBlocks(xapi, first, second)).toEqual(before);
      expect(changedVhdBlocks(before)).toEqual(written);
    } finally {
      await own.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("answers XAPI's bit order: bit i is the most significant first of byte i / 8", async () => {
    const xapi = await fixture.connect();
    // 4 MiB + 3 x 64 KiB: the last 2 MiB block holds only 3 bits (64, 65, 66) of byte 8.
    const size = 2 * BLOCK + 3 * CBT_BLOCK;
    const vdi = await xapi.call<string>("VDI.create", {
      name_label: "odd size",
      SR: xapi.pool.default_SR,
      virtual_size: String(size),
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
    });
    await xapi.call("VDI.enable_cbt", vdi);
    const before = await xapi.call<string>("VDI.snapshot", vdi, {});
    await xapi.call("lab.write_vdi", vdi, 2 * BLOCK + 10, Buffer.from("changed").toString("base64"));
    const after = await xapi.call<string>("VDI.snapshot", vdi, {});
    const bitmap = await changedBlocks(xapi, before, after);
    expect(bitmap.length).toBe(9);
    expect(bitmap.subarray(0, 8).every((byte) => byte === 0)).toBe(true);
    expect(bitmap[8]).toBe(0b1110_0000);
  });

  it("fails as XAPI and SM do: unrelated chains after a reset, snapshots, VDIs without CBT", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
    const plain = await xapi.call<string>("VDI.snapshot", vdi, {});
    await expect(xapi.call("VDI.data_destroy", plain)).rejects.toMatchObject({ code: "VDI_NO_CBT_METADATA", params: [plain] });
    await expect(xapi.call("VDI.data_destroy", vdi)).rejects.toMatchObject({
      code: "OPERATION_NOT_ALLOWED",
      params: [`VDI is not a snapshot: ${vdi}`],
    });
    await xapi.call("VDI.enable_cbt", vdi);
    await expect(xapi.call("VDI.enable_cbt", plain)).rejects.toMatchObject({
      code: "OPERATION_NOT_ALLOWED",
      params: [`VDI is a snapshot: ${plain}`],
    });
    const first = await xapi.call<string>("VDI.snapshot", vdi, {});
    await expect(changedBlocks(xapi, first, first)).rejects.toMatchObject({ code: "SR_BACKEND_FAILURE_460" });
    await expect(changedBlocks(xapi, plain, first)).rejects.toMatchObject({ code: "SR_BACKEND_FAILURE_460" });

    // A reset (migration, CBT disabled and enabled): snapshots before it no longer relate to later ones.
    await xapi.call("lab.set_fault", "cbt_reset", {});
    const second = await xapi.call<string>("VDI.snapshot", vdi, {});
    await expect(changedBlocks(xapi, first, second)).rejects.toMatchObject({
      code: "SR_BACKEND_FAILURE_460",
      params: ["", "Failed to calculate changed blocks for given VDIs. [opterr=Source and target VDI are unrelated]", ""],
    });
    const third = await xapi.call<string>("VDI.snapshot", vdi, {});
    expect(changedVhdBlocks(await changedBlocks(xapi, second, third))).toEqual([]);

    await xapi.call("VDI.disable_cbt", vdi);
    expect(await xapi.call("VDI.get_cbt_enabled", vdi)).toBe(false);
    expect(await xapi.call("VDI.get_cbt_enabled", third)).toBe(true); // the snapshot keeps its log
    await xapi.call("VDI.enable_cbt", vdi);
    const fourth = await xapi.call<string>("VDI.snapshot", vdi, {});
    await expect(changedBlocks(xapi, third, fourth)).rejects.toMatchObject({ code: "SR_BACKEND_FAILURE_460" });
    // A VM snapshot's disk keeps its (unplugged) VBD: XAPI refuses data_destroy until the VBD is gone.
    const vm = vmNamed(xapi, "win-fat");
    const vmSnapshot = await xapi.call<string>("VM.snapshot", vm.$ref, "with vbd");
    const vbd = (await xapi.call<string[]>("VM.get_VBDs", vmSnapshot))[0];
    const snapshotDisk = await xapi.call<string>("VBD.get_VDI", vbd);
    await expect(xapi.call("VDI.data_destroy", snapshotDisk)).rejects.toMatchObject({
      code: "VDI_IN_USE",
      params: [snapshotDisk, "data_destroy"],
    });
    await xapi.call("VBD.destroy", vbd);
    await xapi.call("VDI.data_destroy", snapshotDisk);
    // A clone starts without CBT.
    const clone = await xapi.call<string>("VDI.clone", vdi, {});
    expect(await xapi.call("VDI.get_cbt_enabled", clone)).toBe(false);
  });

  it("offers NBD only on a network with purpose insecure_nbd, with XAPI's export name", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
    expect(await xapi.call("VDI.get_nbd_info", vdi)).toEqual([]);
    const network = (await xapi.call<string[]>("network.get_all"))[0];
    await xapi.call("network.add_purpose", network, "insecure_nbd");
    const [info] = await xapi.call<Array<Record<string, unknown>>>("VDI.get_nbd_info", vdi);
    const uuid = await xapi.call<string>("VDI.get_uuid", vdi);
    expect(info).toMatchObject({ address: "127.0.0.1", cert: "" });
    expect(info.exportname).toMatch(new RegExp(`^/${uuid}\\?session_id=OpaqueRef:`));
    expect(typeof info.port).toBe("number");
  });
});
