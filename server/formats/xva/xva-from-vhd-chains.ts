import { Readable, pipeline } from "node:stream";
import { type Compression, createCompressor } from "../compression.js";
import { VhdChain } from "../vhd/vhd-chain.js";
import type { OvaDocument } from "./ova-document.js";
import { parseOvaXml } from "./ova-xml-parse.js";
import { createXvaStream } from "./xva-writer.js";
import { XvaError } from "./xva-error.js";

/** One disk of the VM, as a VHD chain on local files. */
export interface VhdChainDisk {
  /** The VDI's id in ova.xml, e.g. "Ref:12". */
  ref: string;
  /** Root (full) first, newest last. */
  chain: string[];
}

export interface XvaFromVhdChainsOptions {
  /** The VM's stored metadata as ova.xml (document or XML). Each VDI's virtual_size must equal its chain's size. */
  ova: OvaDocument | string;
  disks: VhdChainDisk[];
  /** @default "none" */
  compression?: Compression;
}

/**
 * Synthesizes an XVA from VHD chains and the VM's metadata, streaming: each disk is read through a VhdChain view,
 * blocks unallocated in the whole chain are skipped as zero chunks without reading. This is how a delta restore
 * point is restored through XAPI's `/import`. Chains are opened when the stream is first read and closed at its end.
 * @throws (through the stream) XvaError XVA_BAD_INPUT for a VDI whose virtual_size differs from its chain, VhdError
 *   for a broken chain.
 */
export function createXvaFromVhdChains(options: XvaFromVhdChainsOptions): Readable {
  const tar = Readable.from(generate(options), { objectMode: false, highWaterMark: 1024 * 1024 });
  const compressor = createCompressor(options.compression ?? "none");
  if (!compressor) return tar;
  return pipeline(tar, compressor, () => {}) as unknown as Readable;
}

async function* generate(options: XvaFromVhdChainsOptions): AsyncGenerator<Buffer> {
  const doc = typeof options.ova === "string" ? parseOvaXml(options.ova) : options.ova;
  const chains: VhdChain[] = [];
  try {
    for (const disk of options.disks) {
      const chain = await VhdChain.open(disk.chain);
      chains.push(chain);
      const vdi = doc.objects.find((object) => object.class === "VDI" && object.id === disk.ref);
      const declared = vdi?.snapshot.virtual_size;
      if (declared !== undefined && Number(declared) !== chain.virtualSize) {
        throw new XvaError(
          "XVA_BAD_INPUT",
          `VDI ${disk.ref} declares virtual_size ${declared} but its chain holds ${chain.virtualSize} bytes`,
          { entry: disk.ref },
        );
      }
    }
    const sources = options.disks.map((disk, i) => ({
      ref: disk.ref,
      virtualSize: chains[i].virtualSize,
      read: (offset: number, length: number) => chains[i].read(offset, length),
      isZero: (offset: number, length: number) => chains[i].isUnallocated(offset, length),
    }));
    for await (const chunk of createXvaStream({ ova: options.ova, disks: sources })) yield chunk as Buffer;
  } finally {
    await Promise.all(chains.map((chain) => chain.close()));
  }
}
