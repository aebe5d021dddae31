import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import { VHD_BLOCK_SIZE, createVhdStream, parseVhdStream, rewriteVhdIdentity } from "../../server/formats/vhd/index.js";

const PARENT = "11111111-2222-3333-4444-555555555555";
const NEW_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const NEW_PARENT = "99999999-8888-7777-6666-555555555555";

function vhd(parent?: { uuid: string; name: string }) {
  const data = Buffer.alloc(VHD_BLOCK_SIZE, 7);
  return createVhdStream({ virtualSize: 3 * VHD_BLOCK_SIZE, parent, blockIndexes: [1], blocks: [{ index: 1, data }] });
}

/** Feeds a stream in awkward chunk sizes, as a network does. */
function rechunk(source: Buffer, size: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < source.length; i += size) yield source.subarray(i, i + size);
    })(),
  );
}

describe("rewriteVhdIdentity", () => {
  it("sets the footer id and the parent id and name of a differencing VHD, whatever the chunking", async () => {
    const original = await buffer(vhd({ uuid: PARENT, name: "old.vhd" }));
    for (const size of [1, 100, 1537, 65536]) {
      const rewritten = await buffer(
        rechunk(original, size).pipe(rewriteVhdIdentity({ uuid: NEW_ID, parent: { uuid: NEW_PARENT, name: "20260101T000000Z.vhd" } })),
      );
      expect(rewritten.length).toBe(original.length);
      const items = [];
      for await (const item of parseVhdStream(Readable.from([rewritten]))) items.push(item);
      const head = items[0];
      if (head.kind !== "header") throw new Error("no header");
      expect(head.footer.uuid).toBe(NEW_ID);
      expect(head.header.parentUuid).toBe(NEW_PARENT);
      expect(head.header.parentUnicodeName).toBe("20260101T000000Z.vhd");
      expect(rewritten.subarray(-512).equals(rewritten.subarray(0, 512))).toBe(true);
      expect(items.filter((i) => i.kind === "block").length).toBe(1);
    }
  });

  it("gives the same bytes whatever the chunking, small chunks after big ones included", async () => {
    const original = await buffer(vhd({ uuid: PARENT, name: "old.vhd" }));
    const identity = { uuid: NEW_ID, parent: { uuid: NEW_PARENT, name: "20260101T000000Z.vhd" } };
    const reference = await buffer(Readable.from([original]).pipe(rewriteVhdIdentity(identity)));
    const mixed = (sizes: number[]) =>
      Readable.from(
        (function* () {
          for (let i = 0, n = 0; i < original.length; n++) {
            const size = sizes[n % sizes.length];
            yield original.subarray(i, i + size);
            i += size;
          }
        })(),
      );
    for (const sizes of [[511], [512], [513], [65536, 1, 100], [1600, 300, 700, 512], [70000, 511, 2]]) {
      const rewritten = await buffer(mixed(sizes).pipe(rewriteVhdIdentity(identity)));
      expect(rewritten.equals(reference)).toBe(true);
    }
  });

  it("refuses a differencing VHD where a full one is expected, and a truncated stream", async () => {
    await expect(buffer(vhd({ uuid: PARENT, name: "p" }).pipe(rewriteVhdIdentity({ uuid: NEW_ID })))).rejects.toThrow(
      /VHD_PARENT_MISMATCH/,
    );
    const original = await buffer(vhd());
    await expect(
      buffer(Readable.from([original.subarray(0, original.length - 100)]).pipe(rewriteVhdIdentity({ uuid: NEW_ID }))),
    ).rejects.toThrow(/VHD_BAD_COOKIE|VHD_TRUNCATED|checksum/i);
  });
});
