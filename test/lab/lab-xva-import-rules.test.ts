/**
 * The lab's `PUT /import` follows XAPI's import rules with its own reader (lab-xva-reader.ts): hand-made XVAs, built
 * here byte by byte, are accepted when they follow the rules and refused with XAPI's errors when they do not (import.ml
 * `with_open_archive` / `non_cdrom_vdis`, stream_vdi.ml `recv_all_vdi` / `verify_inline_checksum`).
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import xxhash from "xxhash-wasm";
import type { Xapi } from "xen-api";
import { createLabFixture, diskOf, objectsOfType, type LabFixture } from "./lab-fixture.js";

const MiB = 1024 * 1024;

function tarEntry(name: string, data: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, "latin1");
  header.write("0000644\0", 100, "latin1");
  header.write("0000000\0", 108, "latin1");
  header.write("0000000\0", 116, "latin1");
  header.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  header.write("00000000000\0", 136, "latin1");
  header.write("0", 156, "latin1");
  header.write("ustar\0", 257, "latin1");
  header.write("00", 263, "latin1");
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return Buffer.concat([header, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

const value = (v: unknown): string => {
  if (typeof v === "string") return `<value>${v}</value>`;
  if (typeof v === "boolean") return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (Array.isArray(v)) return `<value><array><data>${v.map(value).join("")}</data></array></value>`;
  return `<value><struct>${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `<member><name>${k}</name>${value(x)}</member>`)
    .join("")}</struct></value>`;
};

function ovaXml(options: { vdiOfVbd?: string; size: number }): Buffer {
  const objects = [
    {
      class: "VM",
      id: "Ref:0",
      snapshot: { name_label: "hand-made", power_state: "Halted", is_a_template: false, VBDs: ["Ref:1"], VIFs: [] },
    },
    {
      class: "VBD",
      id: "Ref:1",
      snapshot: { VM: "Ref:0", VDI: options.vdiOfVbd ?? "Ref:2", type: "Disk", userdevice: "0", mode: "RW", bootable: true },
    },
    {
      class: "VDI",
      id: "Ref:2",
      snapshot: { name_label: "hand-made disk", virtual_size: String(options.size), SR: "Ref:3", type: "user", VBDs: ["Ref:1"] },
    },
    { class: "SR", id: "Ref:3", snapshot: { name_label: "Local storage", content_type: "user" } },
  ];
  const version = {
    hostname: "h",
    date: "2026-01-01",
    product_version: "8.3.0",
    product_brand: "XCP-ng",
    build_number: "x",
    xapi_major: "1",
    xapi_minor: "20",
    export_vsn: "2",
  };
  return Buffer.from(`<?xml version="1.0"?>${value({ version, objects })}`);
}

interface Chunk {
  name: string;
  data: Buffer;
  sum?: string;
}

async function xva(options: { ova: Buffer; chunks: Chunk[]; first?: string }): Promise<Buffer> {
  const { h64Raw } = await xxhash();
  const parts = [tarEntry(options.first ?? "ova.xml", options.ova)];
  for (const chunk of options.chunks) {
    parts.push(tarEntry(chunk.name, chunk.data));
    parts.push(
      tarEntry(`${chunk.name}.xxhash`, Buffer.from(chunk.sum ?? h64Raw(chunk.data, 0n).toString(16).toUpperCase().padStart(16, "0"))),
    );
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

describe("the lab's XVA import rules (its own reader)", () => {
  let fixture: LabFixture;
  let xapi: Xapi;
  beforeAll(async () => {
    fixture = await createLabFixture();
    xapi = await fixture.connect();
  });
  afterAll(async () => {
    await fixture?.dispose();
  });

  const data = (seed: number) => Buffer.alloc(MiB, seed);
  /** The import's task result (the PUT itself may see its connection closed once the lab has refused the body). */
  const put = async (body: Buffer) => {
    const task = await xapi.createTask("xva import rules");
    const result = xapi.watchTask(task);
    result.catch(() => undefined);
    await xapi.putResource(body, "/import/", { task, query: { sr_id: xapi.pool.default_SR as string } }).catch(() => undefined);
    return result;
  };
  const vmCount = async () => {
    await xapi.barrier();
    return objectsOfType(xapi, "VM").length;
  };

  it("imports a hand-made XVA: chunks 0 and 2 of a 3 MiB disk (chunk 1 skipped: zeros), each with its XXH64", async () => {
    const body = await xva({
      ova: ovaXml({ size: 3 * MiB }),
      chunks: [
        { name: "Ref:2/00000000", data: data(1) },
        { name: "Ref:2/00000002", data: data(3) },
      ],
    });
    const result = String(await put(body));
    const vm = xapi.getObjectByRef(String(result.match(/OpaqueRef:[A-Za-z0-9-]+/)![0]));
    const expected = createHash("sha256")
      .update(Buffer.concat([data(1), Buffer.alloc(MiB), data(3)]))
      .digest("hex");
    expect(await xapi.call("lab.vdi_sha256", diskOf(xapi, vm))).toBe(expected);
  });

  it("refuses, leaving nothing behind: a first file other than ova.xml, a bad checksum, a missing last chunk, a foreign chunk, an unknown VDI", async () => {
    const before = await vmCount();
    const ova = ovaXml({ size: 2 * MiB });
    const both = [
      { name: "Ref:2/00000000", data: data(1) },
      { name: "Ref:2/00000001", data: data(2) },
    ];
    await expect(put(await xva({ ova, chunks: both, first: "ova.xmm" }))).rejects.toMatchObject({
      code: "IMPORT_ERROR_UNEXPECTED_FILE",
      params: ["ova.xml", "ova.xmm"],
    });
    await expect(put(await xva({ ova, chunks: [both[0], { ...both[1], sum: "0000000000000000" }] }))).rejects.toMatchObject({
      code: "IMPORT_ERROR",
      params: [expect.stringMatching(/^Stream_vdi.Invalid_checksum\("Block Ref:2\/00000001 checksum failed/)],
    });
    // XAPI reads chunks until the disk's size is covered: the last chunk must be there, even all zeros.
    await expect(put(await xva({ ova, chunks: [both[0]] }))).rejects.toMatchObject({ code: "IMPORT_ERROR_PREMATURE_EOF" });
    await expect(put(await xva({ ova, chunks: [both[0], { name: "Ref:9/00000001", data: data(2) }] }))).rejects.toMatchObject({
      code: "IMPORT_ERROR",
      params: ['Failure("Invalid XVA file")'],
    });
    await expect(put(await xva({ ova: ovaXml({ size: 2 * MiB, vdiOfVbd: "Ref:7" }), chunks: both }))).rejects.toMatchObject({
      code: "IMPORT_ERROR_FAILED_TO_FIND_OBJECT",
      params: ["Ref:7"],
    });
    expect(await vmCount()).toBe(before);
  });
});
