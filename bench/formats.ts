/**
 * Benchmark of server/formats (issue 3): a 1 GiB disk with half its 2 MiB blocks allocated. Prints MB/s for a plain
 * fs stream copy of the same bytes (the baseline) and for our VHD write, VHD read, chain read, XVA write; the time
 * of merging a 10 % delta; peak RSS. The last line is one JSON object with the figures.
 */
import { randomFillSync } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { VHD_BLOCK_SIZE, type VhdBlock, VhdChain, createVhdStream, mergeVhdChain, parseVhdStream } from "../server/formats/vhd/index.js";
import { type OvaDocument, createXvaFromVhdChains } from "../server/formats/xva/index.js";

const DISK_SIZE = 1024 * 1024 * 1024;
const BLOCKS = DISK_SIZE / VHD_BLOCK_SIZE;
const MB = 1024 * 1024;
const ROOT_UUID = "00000000-0000-4000-8000-0000000000a0";
const DELTA_UUID = "00000000-0000-4000-8000-0000000000a1";

/** Runs `work` `runs` times (the machine is shared: the best run is the least disturbed) and prints MB/s. */
async function timed(label: string, bytes: () => Promise<number> | number, work: () => Promise<unknown>, runs = 3): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await work();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  const rate = (await bytes()) / MB / best;
  const peak = Math.round(process.resourceUsage().maxRSS / 1024);
  console.log(
    `${label.padEnd(28)} ${rate.toFixed(0).padStart(6)} MB/s  (best of ${runs}: ${best.toFixed(2)} s, peak RSS so far ${peak} MB)`,
  );
  return rate;
}

/** Blocks read from the raw source file one at a time (flat memory). */
async function* rawBlocks(path: string, indexes: number[]): AsyncGenerator<VhdBlock> {
  const handle = await open(path, "r");
  try {
    for (const index of indexes) {
      const data = Buffer.allocUnsafe(VHD_BLOCK_SIZE);
      await handle.read(data, 0, VHD_BLOCK_SIZE, index * VHD_BLOCK_SIZE);
      yield { index, data };
    }
  } finally {
    await handle.close();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "cairn-bench-formats-"));
  try {
    // The source: every other block random, the rest a hole.
    const raw = join(dir, "disk.raw");
    const allocated = Array.from({ length: BLOCKS / 2 }, (_, i) => i * 2);
    const handle = await open(raw, "w");
    await handle.truncate(DISK_SIZE);
    const buf = Buffer.allocUnsafe(VHD_BLOCK_SIZE);
    for (const index of allocated) await handle.write(randomFillSync(buf), 0, VHD_BLOCK_SIZE, index * VHD_BLOCK_SIZE);
    await handle.close();
    console.log(
      `disk: ${DISK_SIZE / MB} MiB, ${allocated.length} of ${BLOCKS} blocks allocated (peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MB)`,
    );

    const vhd = join(dir, "full.vhd");
    const sizeOf = (path: string) => async () => (await stat(path)).size;
    const vhdWrite = await timed("our VHD write", sizeOf(vhd), () =>
      pipeline(
        createVhdStream({ virtualSize: DISK_SIZE, uuid: ROOT_UUID, blockIndexes: allocated, blocks: rawBlocks(raw, allocated) }),
        createWriteStream(vhd),
      ),
    );
    const copy = join(dir, "copy.vhd");
    const baseline = await timed("baseline fs stream copy", sizeOf(copy), () => pipeline(createReadStream(vhd), createWriteStream(copy)));
    await rm(copy);

    const back = join(dir, "back.raw");
    const vhdRead = await timed("our VHD read", sizeOf(vhd), async () => {
      const out = await open(back, "w");
      try {
        for await (const item of parseVhdStream(createReadStream(vhd), vhd)) {
          if (item.kind === "header") await out.truncate(item.footer.currentSize);
          else await out.write(item.data, 0, item.data.length, item.index * VHD_BLOCK_SIZE);
        }
      } finally {
        await out.close();
      }
    });
    await rm(back);

    // A 10 % delta: 51 blocks, half of them over allocated blocks, each with every sector present.
    const delta = join(dir, "delta.vhd");
    const deltaBlocks = Array.from({ length: Math.round(BLOCKS / 10) }, (_, i) => i * 10 + (i % 2));
    await pipeline(
      createVhdStream({
        virtualSize: DISK_SIZE,
        uuid: DELTA_UUID,
        parent: { uuid: ROOT_UUID, name: "full.vhd" },
        blockIndexes: deltaBlocks,
        blocks: rawBlocks(raw, deltaBlocks),
      }),
      createWriteStream(delta),
    );

    const chainOut = join(dir, "chain.raw");
    let chainBytes = 0;
    const chainRead = await timed(
      "chain read (full + delta)",
      () => chainBytes,
      async () => {
        chainBytes = 0;
        const chain = await VhdChain.open([vhd, delta]);
        const out = createWriteStream(chainOut);
        try {
          for (const index of chain.allocatedBlocks()) {
            const data = await chain.read(index * VHD_BLOCK_SIZE, VHD_BLOCK_SIZE);
            chainBytes += data.length;
            if (!out.write(data)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
          }
        } finally {
          await new Promise<void>((resolve) => out.end(() => resolve()));
          await chain.close();
        }
      },
    );
    await rm(chainOut);

    const xva = join(dir, "vm.xva");
    const ova: OvaDocument = {
      version: {
        hostname: "bench",
        date: "2024-05-01",
        product_version: "8.2.1",
        product_brand: "XCP-ng",
        build_number: "bench",
        xapi_major: 1,
        xapi_minor: 20,
        export_vsn: 2,
      },
      objects: [
        { class: "VM", id: "Ref:1", snapshot: { name_label: "bench", VBDs: ["Ref:2"] } },
        { class: "VDI", id: "Ref:3", snapshot: { name_label: "disk", virtual_size: String(DISK_SIZE) } },
      ],
    };
    const xvaWrite = await timed("XVA write (from the chain)", sizeOf(xva), () =>
      pipeline(createXvaFromVhdChains({ ova, disks: [{ ref: "Ref:3", chain: [vhd, delta] }] }), createWriteStream(xva)),
    );
    await rm(xva);

    const mergeStart = process.hrtime.bigint();
    await mergeVhdChain({ parent: vhd, child: delta });
    const mergeSeconds = Number(process.hrtime.bigint() - mergeStart) / 1e9;
    console.log(`merge of a 10 % delta          ${mergeSeconds.toFixed(2)} s`);

    const peakRssMB = Math.round(process.resourceUsage().maxRSS / 1024);
    console.log(`peak RSS                       ${peakRssMB} MB`);
    const ratio = (value: number) => Math.round((value / baseline) * 100) / 100;
    console.log(
      JSON.stringify({
        vhdWriteRatio: ratio(vhdWrite),
        vhdReadRatio: ratio(vhdRead),
        chainReadRatio: ratio(chainRead),
        xvaWriteRatio: ratio(xvaWrite),
        mergeSeconds: Math.round(mergeSeconds * 100) / 100,
        peakRssMB,
      }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
