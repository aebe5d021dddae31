/**
 * The encrypted remote (server/remotes/encrypted/): the whole Remote contract over a LOCAL folder, then its own promises:
 * plaintext sizes and ranges at every chunk boundary, in-place rewrites, flat memory, the key check, and tampering of
 * every sort (a flipped byte, swapped chunks, a cut file, an appended chunk, another key) failing with INTEGRITY or
 * WRONG_KEY naming the file, never with wrong data. Also: the Python script of server/repository/FORMAT.md decrypts a
 * file written here.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemote } from "../../server/remotes/create-remote.js";
import { EncryptedRemote, JOURNAL_SUFFIX } from "../../server/remotes/encrypted/encrypted-remote.js";
import { CHUNK_SIZE, HEADER_SIZE, KEY_CHECK_FILE, SLOT_SIZE, storedSize } from "../../server/remotes/encrypted/format.js";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import { RemoteError } from "../../server/remotes/remote-error.js";
import type { Remote } from "../../server/remotes/remote.js";
import { describeRemoteConformance, expectRemoteError } from "./conformance.js";
import { digestStream, testSource } from "./test-source.js";

const PASSPHRASE = "correct horse battery staple";
const RAW_KEY = "5f".repeat(32);

describeRemoteConformance("encrypted LOCAL", { exclusiveCreateIsAtomic: true }, async () => {
  const folder = await mkdtemp(join(tmpdir(), "cairn-encrypted-conformance-"));
  return {
    remote: new EncryptedRemote(new LocalRemote(folder), PASSPHRASE),
    twin: () => new EncryptedRemote(new LocalRemote(folder), PASSPHRASE),
    dispose: () => rm(folder, { recursive: true, force: true }),
  };
});

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** What a read gives: the bytes, or the error it failed with (so a test can show it never gave bytes). */
async function attempt(read: () => Promise<Buffer>): Promise<{ bytes?: Buffer; error?: RemoteError }> {
  try {
    return { bytes: await read() };
  } catch (error) {
    if (!(error instanceof RemoteError)) throw error;
    return { error };
  }
}

describe("encrypted remote: format and integrity", () => {
  let folder: string;
  let remote: EncryptedRemote;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "cairn-encrypted-"));
    remote = new EncryptedRemote(new LocalRemote(folder), PASSPHRASE);
    await remote.open();
  });
  afterAll(async () => {
    await remote?.close();
    await rm(folder, { recursive: true, force: true });
  });

  it("makes a key check file on first open of an empty folder, hides it from listings, stores no plaintext", async () => {
    expect(await readdir(folder)).toEqual([KEY_CHECK_FILE]);
    const check = JSON.parse(await readFile(join(folder, KEY_CHECK_FILE), "utf8"));
    expect(check).toMatchObject({
      format: "cairn-encrypted-remote",
      cipher: "AES-256-GCM",
      chunkSize: CHUNK_SIZE,
      kdf: { name: "scrypt" },
    });
    expect(JSON.stringify(check)).not.toContain(PASSPHRASE);
    await remote.writeFile("plain/secret.txt", "the quick brown fox jumps over the lazy dog");
    expect(await remote.list("")).toEqual(["plain"]);
    const stored = await readFile(join(folder, "plain/secret.txt"));
    expect(stored.toString("latin1")).not.toContain("quick brown fox");
    expect(stored.subarray(0, 8).toString()).toBe("CAIRNENC");
  });

  const sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17, 1_000_000];
  it.each(sizes)("writes and reads back %i bytes, whole and by ranges at the chunk boundaries", async (size) => {
    const data = randomBytes(size);
    // Pieces of odd sizes, so that chunk boundaries fall inside them.
    const pieces: Buffer[] = [];
    for (let at = 0; at < size; at += 7_777) pieces.push(data.subarray(at, at + 7_777));
    const path = `sizes/${size}.bin`;
    expect(await remote.writeStream(path, Readable.from(pieces), { sizeHint: size })).toEqual({ bytes: size });
    expect((await stat(join(folder, path))).size).toBe(storedSize(size));
    expect((await remote.stat(path)).size).toBe(size);
    expect((await readAll(await remote.createReadStream(path))).equals(data)).toBe(true);
    expect((await remote.readFile(path)).equals(data)).toBe(true);
    const edges = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE - 1, 2 * CHUNK_SIZE, size - 1, size];
    const file = await remote.openRandomAccess(path);
    try {
      expect(file.size).toBe(size);
      for (const start of edges.filter((e) => e >= 0 && e <= size)) {
        for (const end of edges.filter((e) => e >= start)) {
          const got = await readAll(await remote.createReadStream(path, { start, end }));
          expect(got.equals(data.subarray(start, end + 1)), `range ${start}-${end} of ${size}`).toBe(true);
          if (end < size) expect((await file.read(start, end - start + 1)).equals(data.subarray(start, end + 1))).toBe(true);
        }
      }
      // Past the end: clamped, or empty.
      expect((await readAll(await remote.createReadStream(path, { start: size + 5 }))).length).toBe(0);
      await expectRemoteError(file.read(size, 1), "INVALID_ARGUMENT");
    } finally {
      await file.close();
    }
  });

  it("rewrites in place: writes inside, across chunks, past the end (with a gap) and truncates, reading right after each", async () => {
    const path = "update/disk.bin";
    let model = randomBytes(3 * CHUNK_SIZE + 100);
    await remote.writeFile(path, model);
    const file = await remote.openForUpdate!(path);
    const apply = async (offset: number, data: Buffer) => {
      await file.write(offset, data);
      const grown = Buffer.alloc(Math.max(model.length, offset + data.length));
      model.copy(grown);
      data.copy(grown, offset);
      model = grown;
    };
    try {
      await apply(10, randomBytes(100));
      await apply(CHUNK_SIZE - 50, randomBytes(CHUNK_SIZE + 100));
      await apply(model.length - 10, randomBytes(30)); // grows inside the last chunk
      await apply(model.length + 5 * CHUNK_SIZE + 3, randomBytes(2 * CHUNK_SIZE)); // a gap of zeros
      expect(file.size).toBe(model.length);
      expect((await file.read(0, model.length)).equals(model)).toBe(true);
      await file.truncate(CHUNK_SIZE * 2 + 1);
      model = model.subarray(0, CHUNK_SIZE * 2 + 1);
      await file.truncate(CHUNK_SIZE * 4);
      model = Buffer.concat([model, Buffer.alloc(CHUNK_SIZE * 4 - model.length)]);
      await file.sync();
    } finally {
      await file.close();
    }
    expect((await remote.stat(path)).size).toBe(model.length);
    expect((await remote.readFile(path)).equals(model)).toBe(true);
    const again = await remote.openForUpdate!(path);
    await again.truncate(0);
    await again.close();
    expect((await remote.readFile(path)).length).toBe(0);
  });

  it("finishes a write in place that a crash tore, from its journal, at the next open; a torn journal record is ignored", async () => {
    const path = "crash/parent.vhd";
    const before = randomBytes(3 * CHUNK_SIZE + 500);
    await remote.writeFile(path, before);
    // A storage whose writes in place of the data file stop halfway, as a crash would leave them (the journal's go through).
    const local = new LocalRemote(folder);
    const torn: Remote = Object.assign(Object.create(local) as Remote, {
      async openForUpdate(target: string) {
        const handle = await local.openForUpdate(target);
        if (target.endsWith(JOURNAL_SUFFIX)) return handle;
        return Object.assign(Object.create(handle), {
          async write(offset: number, data: Uint8Array) {
            await handle.write(offset, data.subarray(0, Math.floor(data.length / 2)));
            throw new Error("the machine lost power");
          },
        });
      },
    });
    const crashing = new EncryptedRemote(torn, PASSPHRASE);
    const file = await crashing.openForUpdate!(path);
    const patch = randomBytes(CHUNK_SIZE + 20);
    await expect(file.write(CHUNK_SIZE - 10, patch)).rejects.toThrow("lost power");
    // The handle is abandoned, never synced nor closed. Read as it is, the torn chunk would not authenticate.
    expect((await readdir(join(folder, "crash"))).sort()).toEqual(["parent.vhd", `parent.vhd${JOURNAL_SUFFIX}`]);
    expect(await remote.list("crash")).toEqual(["parent.vhd"]);
    const after = Buffer.from(before);
    patch.copy(after, CHUNK_SIZE - 10);
    const fresh = new EncryptedRemote(new LocalRemote(folder), PASSPHRASE);
    expect((await fresh.readFile(path)).equals(after)).toBe(true);
    expect(await readdir(join(folder, "crash"))).toEqual(["parent.vhd"]);

    // A crash while the journal itself was written: the record is torn, its write in place never began.
    const journal = join(folder, `crash/parent.vhd${JOURNAL_SUFFIX}`);
    await writeFile(journal, randomBytes(40));
    expect((await fresh.readFile(path)).equals(after)).toBe(true);
    expect(await readdir(join(folder, "crash"))).toEqual(["parent.vhd"]);
    await fresh.close();
  });

  /** A file of 4 chunks, tampered with by `damage` on its stored bytes; every way of reading it must fail, naming it. */
  async function expectTamperedFails(name: string, damage: (storedPath: string) => Promise<void>) {
    const path = `tampered/${name}.bin`;
    await remote.writeFile(path, randomBytes(4 * CHUNK_SIZE - 10));
    await damage(join(folder, path));
    const reads: Array<[string, () => Promise<Buffer>]> = [
      ["readFile", () => remote.readFile(path)],
      ["whole stream", async () => readAll(await remote.createReadStream(path))],
      ["ranged stream over everything", async () => readAll(await remote.createReadStream(path, { start: 1, end: 4 * CHUNK_SIZE }))],
      [
        "random access",
        async () => {
          const file = await remote.openRandomAccess(path);
          try {
            return await file.read(0, file.size);
          } finally {
            await file.close();
          }
        },
      ],
    ];
    for (const [how, read] of reads) {
      const outcome = await attempt(read);
      expect(outcome.bytes, `${name}: ${how} gave bytes`).toBeUndefined();
      expect(outcome.error?.code, `${name}: ${how}: ${outcome.error?.message}`).toBe("INTEGRITY");
      expect(outcome.error?.message).toContain(path);
    }
  }

  it("fails with INTEGRITY naming the file on a flipped byte", () =>
    expectTamperedFails("flipped", async (file) => {
      const bytes = await readFile(file);
      bytes[HEADER_SIZE + SLOT_SIZE + 1000] ^= 0x01;
      await writeFile(file, bytes);
    }));

  it("fails with INTEGRITY naming the file on swapped chunks", () =>
    expectTamperedFails("swapped", async (file) => {
      const bytes = await readFile(file);
      const first = Buffer.from(bytes.subarray(HEADER_SIZE, HEADER_SIZE + SLOT_SIZE));
      bytes.copy(bytes, HEADER_SIZE, HEADER_SIZE + SLOT_SIZE, HEADER_SIZE + 2 * SLOT_SIZE);
      first.copy(bytes, HEADER_SIZE + SLOT_SIZE);
      await writeFile(file, bytes);
    }));

  it("fails with INTEGRITY naming the file when cut at a chunk boundary, and inside a chunk", async () => {
    await expectTamperedFails("cut-at-boundary", (file) => truncate(file, HEADER_SIZE + 2 * SLOT_SIZE));
    await expectTamperedFails("cut-inside", (file) => truncate(file, HEADER_SIZE + 2 * SLOT_SIZE + 10));
  });

  it("fails with INTEGRITY naming the file with a chunk appended, or a chunk of another file put in", async () => {
    await expectTamperedFails("appended", async (file) => {
      const bytes = await readFile(file);
      await writeFile(
        file,
        Buffer.concat([bytes.subarray(0, bytes.length - 18), bytes.subarray(HEADER_SIZE, HEADER_SIZE + SLOT_SIZE + 18)]),
      );
    });
    await remote.writeFile("tampered/other.bin", randomBytes(4 * CHUNK_SIZE - 10));
    const other = await readFile(join(folder, "tampered/other.bin"));
    await expectTamperedFails("foreign-chunk", async (file) => {
      const bytes = await readFile(file);
      other.copy(bytes, HEADER_SIZE, HEADER_SIZE, HEADER_SIZE + SLOT_SIZE);
      await writeFile(file, bytes);
    });
  });

  it("gives no byte of a damaged chunk to a stream, even after the good chunks before it", async () => {
    const path = "tampered/late.bin";
    const data = randomBytes(5 * CHUNK_SIZE);
    await remote.writeFile(path, data);
    const bytes = await readFile(join(folder, path));
    bytes[HEADER_SIZE + 3 * SLOT_SIZE + 5] ^= 0x80;
    await writeFile(join(folder, path), bytes);
    const received: Buffer[] = [];
    const stream = await remote.createReadStream(path);
    const failure = await (async () => {
      try {
        for await (const part of stream) received.push(part as Buffer);
      } catch (error) {
        return error as RemoteError;
      }
    })();
    expect(failure?.code).toBe("INTEGRITY");
    expect(failure?.message).toMatch(/chunk 3 of 5/);
    const got = Buffer.concat(received);
    expect(got.length).toBeLessThanOrEqual(3 * CHUNK_SIZE);
    expect(got.equals(data.subarray(0, got.length))).toBe(true);
  });

  it("refuses another key at open with WRONG_KEY, and a raw key where a passphrase was used", async () => {
    const wrong = new EncryptedRemote(new LocalRemote(folder), "not the right passphrase");
    const error = await expectRemoteError(wrong.open(), "WRONG_KEY");
    expect(error.message).toContain("the key check file does not open with it");
    expect(error.message).not.toContain("not the right passphrase");
    await expectRemoteError(wrong.readFile("plain/secret.txt"), "WRONG_KEY");
    await expectRemoteError(new EncryptedRemote(new LocalRemote(folder), RAW_KEY).open(), "WRONG_KEY");
  });

  it("with a raw 32-byte key (hex or base64, the same key), reads what it wrote; a wrong file still fails INTEGRITY", async () => {
    const other = await mkdtemp(join(tmpdir(), "cairn-encrypted-raw-"));
    try {
      const hex = createRemote({ kind: "LOCAL", location: other, encryptionKey: RAW_KEY });
      await hex.writeFile("a.txt", "written with the raw key");
      await hex.close();
      const base64 = createRemote({ kind: "LOCAL", location: other, encryptionKey: Buffer.from(RAW_KEY, "hex").toString("base64") });
      expect((await base64.readFile("a.txt")).toString()).toBe("written with the raw key");
      // A file of another encrypted remote (another key) copied in: it does not authenticate.
      await writeFile(join(other, "b.txt"), await readFile(join(folder, "plain/secret.txt")));
      const error = await expectRemoteError(base64.readFile("b.txt"), "INTEGRITY");
      expect(error.message).toContain('"b.txt"');
      await base64.close();
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it("refuses to encrypt a folder that already holds plain files", async () => {
    const other = await mkdtemp(join(tmpdir(), "cairn-encrypted-plain-"));
    try {
      await writeFile(join(other, "xo-vm-backups"), "plain");
      const error = await expectRemoteError(new EncryptedRemote(new LocalRemote(other), PASSPHRASE).open(), "INVALID_CONFIG");
      expect(error.message).toContain("not encrypted");
      expect(await readdir(other)).toEqual(["xo-vm-backups"]);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it("streams 256 MiB in and out in flat memory", { timeout: 120_000 }, async () => {
    const size = 256 * 1024 * 1024;
    // A first, smaller stream brings the process to its working size (buffer pools, cipher contexts, the young
    // generation, which Node.js 24 sizes larger than 20): what the large one adds on top of that must not follow its size.
    const warmUp = testSource(64 * 1024 * 1024);
    await remote.writeStream("big/warm-up.bin", warmUp.stream);
    await digestStream(await remote.createReadStream("big/warm-up.bin"));
    await remote.delete("big/warm-up.bin");
    const source = testSource(size);
    const before = process.memoryUsage().rss;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      await remote.writeStream("big/disk.bin", source.stream, { sizeHint: size });
      const read = await digestStream(await remote.createReadStream("big/disk.bin"));
      expect(read.bytes).toBe(size);
      expect(read.digest.equals(source.digest())).toBe(true);
    } finally {
      clearInterval(timer);
    }
    expect(peak - before, "resident memory grew").toBeLessThan(64 * 1024 * 1024);
    await remote.delete("big/disk.bin");
  });

  it("is decrypted by the Python script of FORMAT.md, given the passphrase", async (context) => {
    const python = spawnSync("python3", ["-c", "import cryptography"], { encoding: "utf8" });
    if (python.status !== 0) context.skip();
    const format = await readFile(new URL("../../server/repository/FORMAT.md", import.meta.url), "utf8");
    const script = /## Encryption[\s\S]*?```python\n([\s\S]*?)```/.exec(format)?.[1];
    expect(script, "FORMAT.md has a Python script in its Encryption section").toBeDefined();
    const data = randomBytes(2 * CHUNK_SIZE + 333);
    await remote.writeFile("script/file.bin", data);
    const scriptPath = join(folder, "..", `cairn-decrypt-${process.pid}.py`);
    await writeFile(scriptPath, script!);
    try {
      const run = spawnSync("python3", [scriptPath, join(folder, KEY_CHECK_FILE), join(folder, "script/file.bin")], {
        input: `${PASSPHRASE}\n`,
        maxBuffer: 16 * 1024 * 1024,
      });
      expect(run.stderr.toString()).toBe("");
      expect(createHash("sha256").update(run.stdout).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    } finally {
      await rm(scriptPath, { force: true });
    }
  });
});

describe("encrypted remote: any kind", () => {
  it("is what createRemote makes when the configuration has an encryption key, and a plain remote otherwise", async () => {
    const folder = await mkdtemp(join(tmpdir(), "cairn-encrypted-create-"));
    try {
      const plain: Remote = createRemote({ kind: "LOCAL", location: folder });
      expect(plain).toBeInstanceOf(LocalRemote);
      const encrypted = createRemote({ kind: "LOCAL", location: folder, encryptionKey: PASSPHRASE });
      expect(encrypted).toBeInstanceOf(EncryptedRemote);
      expect(encrypted.name).toContain(folder);
      expect(encrypted.name).not.toContain(PASSPHRASE);
      expect(typeof encrypted.openForUpdate).toBe("function");
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
