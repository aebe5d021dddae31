import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createXvaFromVhdChains } from "../../server/formats/xva/index.js";
import { randomWrites, writeDelta } from "./support/delta.js";
import { rawToVhd } from "./support/raw-disk.js";
import { SeededRandom } from "./support/seeded-random.js";
import { tempDir } from "./support/temp-dir.js";
import { collect, readAll, sampleOva } from "./support/xva-helpers.js";

const MiB = 1024 * 1024;

describe("XVA synthesized from VHD chains", async () => {
  const dir = await tempDir();
  await mkdir(join(dir, "c"));
  const size = 10 * MiB;
  const random = new SeededRandom(5);
  const disk = Buffer.alloc(size);
  randomWrites(disk, random, 8);
  await writeFile(join(dir, "c", "0.raw"), disk);
  const root = join(dir, "c", "0.vhd");
  await rawToVhd(join(dir, "c", "0.raw"), root, size, { uuid: "00000000-0000-4000-8000-000000000001" });
  const delta = join(dir, "c", "1.vhd");
  await writeDelta(
    delta,
    disk,
    randomWrites(disk, random, 20),
    { uuid: "00000000-0000-4000-8000-000000000002", parentUuid: "00000000-0000-4000-8000-000000000001" },
    random,
  );
  const ova = sampleOva([{ ref: "Ref:12", size }]);

  for (const compression of ["none", "zstd"] as const) {
    it(`streams the chain's newest point in time as the VDI's chunks (compression ${compression})`, async () => {
      const { items, disks } = await readAll(
        createXvaFromVhdChains({ ova, disks: [{ ref: "Ref:12", chain: [root, delta] }], compression }),
        { "Ref:12": size },
      );
      expect(items[0].kind).toBe("ova");
      expect(disks["Ref:12"].equals(disk)).toBe(true);
      expect(items.at(-1)).toEqual({ kind: "end" });
    });
  }

  it("refuses a VDI whose declared virtual_size differs from its chain", async () => {
    const wrong = sampleOva([{ ref: "Ref:12", size: size + MiB }]);
    await expect(collect(createXvaFromVhdChains({ ova: wrong, disks: [{ ref: "Ref:12", chain: [root, delta] }] }))).rejects.toThrow(
      `XVA_BAD_INPUT: VDI Ref:12 declares virtual_size ${size + MiB} but its chain holds ${size} bytes (entry Ref:12)`,
    );
  });
});
