import { Readable } from "node:stream";
import type { OvaDocument, XvaDiskSource, XvaItem } from "../../../server/formats/xva/index.js";
import { readXva } from "../../../server/formats/xva/index.js";

/** A disk source over an in-memory buffer. */
export function bufferDisk(ref: string, bytes: Buffer): XvaDiskSource {
  return { ref, virtualSize: bytes.length, read: async (offset, length) => Buffer.from(bytes.subarray(offset, offset + length)) };
}

/** A small but realistic ova.xml document with a VM, its VBDs and the VDIs `refs`. */
export function sampleOva(vdis: Array<{ ref: string; size: number }>): OvaDocument {
  return {
    version: {
      hostname: "lab",
      date: "2024-05-01",
      product_version: "8.2.1",
      product_brand: "XCP-ng",
      build_number: "release/yangtze",
      xapi_major: 1,
      xapi_minor: 20,
      export_vsn: 2,
    },
    objects: [
      {
        class: "VM",
        id: "Ref:1",
        snapshot: {
          uuid: "3d0e1e5a-7d0b-4c46-8d5c-6a8f5b0f1d11",
          name_label: "web <01> & co",
          power_state: "Halted",
          VCPUs_max: 2,
          memory_static_max: 4294967296,
          is_a_snapshot: false,
          HVM_shadow_multiplier: 1.5,
          other_config: { mac_seed: "x" },
          VBDs: vdis.map((_, i) => `Ref:${100 + i}`),
          snapshot_time: new Date("2024-05-01T10:20:30Z"),
        },
      },
      ...vdis.map((vdi) => ({
        class: "VDI",
        id: vdi.ref,
        snapshot: { uuid: `vdi-${vdi.ref}`, virtual_size: String(vdi.size), name_label: vdi.ref, VBDs: [] },
      })),
    ],
  };
}

/** Reads an XVA back into its items, reassembling each disk's bytes. */
export async function readAll(
  source: Readable | AsyncIterable<Buffer>,
  sizes: Record<string, number>,
): Promise<{ items: XvaItem[]; disks: Record<string, Buffer> }> {
  const items: XvaItem[] = [];
  const disks: Record<string, Buffer> = Object.fromEntries(Object.entries(sizes).map(([ref, size]) => [ref, Buffer.alloc(size)]));
  for await (const item of readXva(source, "test.xva")) {
    items.push(item.kind === "chunk" ? { ...item, data: Buffer.alloc(0) } : item);
    if (item.kind === "chunk") item.data.copy(disks[item.ref], item.offset);
  }
  return { items, disks };
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function bytesOf(buffer: Buffer): Readable {
  return Readable.from([buffer], { objectMode: false });
}
