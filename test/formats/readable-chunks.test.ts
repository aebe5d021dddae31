/**
 * readableChunks: a byte stream's chunks one by one, as they were pushed. Node's own async iterator joins the chunks that
 * wait in the buffer into one new Buffer (a copy of a whole VHD block behind its bitmap); this hands over the pushed
 * Buffers themselves, and keeps the iterator's endings: the stream's error, a premature close, a destroy when the
 * consumer stops early.
 */
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { readableChunks } from "../../server/formats/readable-chunks.js";

async function collect(source: Readable): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of readableChunks(source)) chunks.push(chunk);
  return chunks;
}

describe("readableChunks", () => {
  it("hands over the pushed Buffers themselves, one at a time, where Node's iterator joins those that wait", async () => {
    const bitmap = Buffer.alloc(512, 0xff);
    const block = Buffer.alloc(2 * 1024 * 1024, 7);
    const waiting = () => {
      const stream = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
      stream.write(bitmap);
      stream.write(block);
      stream.end();
      return stream;
    };
    const joined: Buffer[] = [];
    for await (const chunk of waiting()) joined.push(chunk as Buffer);
    expect(joined).toHaveLength(1); // what this module exists to avoid: one new 2 MiB + 512 bytes buffer, a copy

    const chunks = await collect(waiting());
    expect(chunks).toHaveLength(2);
    expect(chunks[0].buffer).toBe(bitmap.buffer);
    expect(chunks[1].buffer).toBe(block.buffer);
  });

  it("reads a stream that is fed slowly to its end, strings as their bytes", async () => {
    const stream = new PassThrough();
    const done = collect(stream);
    for (const part of ["ab", "cde", "f"]) {
      stream.write(part);
      await new Promise((resolve) => setImmediate(resolve));
    }
    stream.end("g");
    expect(Buffer.concat(await done).toString()).toBe("abcdefg");
  });

  it("gives the chunks that came before the stream's error, then throws that error", async () => {
    const stream = new PassThrough();
    stream.write("first");
    const seen: string[] = [];
    const reading = (async () => {
      for await (const chunk of readableChunks(stream)) {
        seen.push(chunk.toString());
        stream.destroy(new Error("the export broke off"));
      }
    })();
    await expect(reading).rejects.toThrow("the export broke off");
    expect(seen).toEqual(["first"]);
  });

  it("throws on a close without an end", async () => {
    const stream = new Readable({ read() {} });
    stream.push("partial");
    setImmediate(() => stream.destroy());
    await expect(collect(stream)).rejects.toMatchObject({ code: "ERR_STREAM_PREMATURE_CLOSE" });
  });

  it("destroys the stream when the consumer stops early, and only then", async () => {
    const early = Readable.from([Buffer.from("a"), Buffer.from("b"), Buffer.from("c")], { objectMode: false });
    for await (const chunk of readableChunks(early)) {
      expect(chunk.toString()).toBe("a");
      break;
    }
    expect(early.destroyed).toBe(true);

    const whole = new PassThrough({ autoDestroy: false });
    whole.end("all");
    expect(Buffer.concat(await collect(whole)).toString()).toBe("all");
    expect(whole.destroyed).toBe(false);
  });

  it("ends at once for a stream that ended before it was read", async () => {
    const stream = new PassThrough();
    stream.end();
    stream.resume();
    await new Promise((resolve) => stream.once("end", resolve));
    expect(await collect(stream)).toEqual([]);
  });
});
