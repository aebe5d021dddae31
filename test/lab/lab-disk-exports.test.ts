import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseVhdStream } from "../../server/formats/vhd/index.js";
import { knownFiles } from "../../server/lab/index.js";
import { skipReasonForTools } from "../support/system-tools.js";
import { createLabFixture, diskOf, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

const BLOCK = 2 * 1024 * 1024;

/** Applies a (dynamic or differencing) VHD stream onto a raw file, sector bitmap honoured. */
async function applyVhd(stream: AsyncIterable<Buffer>, rawPath: string): Promise<number> {
  const file = await open(rawPath, "r+");
  let blocks = 0;
  try {
    for await (const item of parseVhdStream(stream)) {
      if (item.kind !== "block") continue;
      blocks++;
      expect(item.bitmap.every((byte) => byte === 0xff)).toBe(true);
      await file.write(item.data, 0, item.data.length, item.index * item.data.length);
    }
  } finally {
    await file.close();
  }
  return blocks;
}

async function sha256File(path: string, size: number): Promise<string> {
  const file = await open(path, "r");
  try {
    const hash = createHash("sha256");
    const buffer = Buffer.alloc(size);
    await file.read(buffer, 0, size, 0);
    return hash.update(buffer).digest("hex");
  } finally {
    await file.close();
  }
}

describe.skipIf(skipReasonForTools(["qemu-img", "debugfs", "mtype"]))("the lab's disks and raw/VHD exports", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("exports a VDI as a VHD whose content equals its raw export (qemu-img compare)", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "web-ext4"));
    const raw = await xapi.getResource("/export_raw_vdi/", { query: { vdi, format: "raw" } });
    const rawPath = join(fixture.dir, "disk.raw");
    await writeFile(rawPath, await readAll(raw.body));
    await raw.task;
    const vhd = await xapi.getResource("/export_raw_vdi/", { query: { vdi, format: "vhd" } });
    expect(vhd.headers["content-type"]).toBe("application/vhd");
    const vhdPath = join(fixture.dir, "disk.vhd");
    await writeFile(vhdPath, await readAll(vhd.body));
    await vhd.task;
    execFileSync("qemu-img", ["compare", "-f", "vpc", "-F", "raw", vhdPath, rawPath]);
    expect(
      createHash("sha256")
        .update(await readAll((await open(rawPath)).createReadStream()))
        .digest("hex"),
    ).toBe(await xapi.call("lab.vdi_sha256", vdi));
  });

  it("holds an MBR ext4 disk and a GPT FAT disk with the known files", async () => {
    const xapi = await fixture.connect();
    const files = knownFiles("test");
    const export_ = async (name: string) => {
      const response = await xapi.getResource("/export_raw_vdi/", { query: { vdi: diskOf(xapi, vmNamed(xapi, name)), format: "raw" } });
      const path = join(fixture.dir, `${name}.raw`);
      await writeFile(path, await readAll(response.body));
      await response.task;
      return path;
    };
    const ext4 = await export_("web-ext4");
    expect(execFileSync("sfdisk", ["--dump", ext4]).toString()).toMatch(/label: dos[\s\S]*start=\s*2048.*type=83/);
    const partition = join(fixture.dir, "ext4.part");
    execFileSync("dd", [`if=${ext4}`, `of=${partition}`, "bs=1M", "skip=1", "status=none"]);
    expect(execFileSync("debugfs", ["-R", "cat /home/alice/notes.txt", partition], { stdio: ["ignore", "pipe", "ignore"] })).toEqual(
      files.ext4.get("/home/alice/notes.txt"),
    );
    expect(
      execFileSync("debugfs", ["-R", "cat /var/lib/app/data.bin", partition], { stdio: ["ignore", "pipe", "ignore"], maxBuffer: 1 << 20 }),
    ).toEqual(files.ext4.get("/var/lib/app/data.bin"));
    const fat = await export_("win-fat");
    expect(execFileSync("sfdisk", ["--dump", fat]).toString()).toMatch(/label: gpt[\s\S]*EBD0A0A2-B9E5-4433-87C0-68B6B72699C7/);
    expect(execFileSync("mtype", ["-i", `${fat}@@1M`, "::/DOCS/REPORT.TXT"])).toEqual(files.fat.get("/DOCS/REPORT.TXT"));
  });

  it("after lab.scribble, the differencing export applied over the base's export reproduces lab.vdi_sha256", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "db-data");
    const vdi = diskOf(xapi, vm);
    const base = await xapi.callAsync<string>("VDI.snapshot", vdi, {});
    const full = await xapi.getResource("/export_raw_vdi/", { query: { vdi: base, format: "vhd" } });
    const rawPath = join(fixture.dir, "chain.raw");
    execFileSync("truncate", ["-s", String(8 * 1024 * 1024), rawPath]);
    await applyVhd(full.body, rawPath);
    await full.task;
    const changed = await xapi.call<number[]>("lab.scribble", vdi, 2, "delta-1");
    expect(changed).toHaveLength(2);
    const delta = await xapi.getResource("/export_raw_vdi/", { query: { vdi, base, format: "vhd" } });
    const blocks = await applyVhd(delta.body, rawPath);
    await delta.task;
    expect(blocks).toBe(2);
    expect(await sha256File(rawPath, 8 * 1024 * 1024)).toBe(await xapi.call("lab.vdi_sha256", vdi));
    expect(await xapi.call("lab.vdi_sha256", base)).not.toBe(await xapi.call("lab.vdi_sha256", vdi));
  });

  it("applies raw and VHD imports with import_raw_vdi onto an existing VDI", async () => {
    const xapi = await fixture.connect();
    const source = diskOf(xapi, vmNamed(xapi, "db-data"));
    const base = await xapi.callAsync<string>("VDI.snapshot", source, {});
    await xapi.call("lab.scribble", source, 3, "delta-2");
    const target = await xapi.callAsync<string>("VDI.create", {
      name_label: "restored",
      SR: xapi.pool.default_SR,
      virtual_size: 8 * 1024 * 1024,
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
      xenstore_data: {},
      sm_config: {},
      tags: [],
    });
    const rawBase = await readAll((await xapi.getResource("/export_raw_vdi/", { query: { vdi: base, format: "raw" } })).body);
    await xapi.putResource(rawBase, "/import_raw_vdi/", { query: { vdi: target, format: "raw" } });
    expect(await xapi.call("lab.vdi_sha256", target)).toBe(await xapi.call("lab.vdi_sha256", base));
    const delta = await xapi.getResource("/export_raw_vdi/", { query: { vdi: source, base, format: "vhd" } });
    const vhd = await readAll(delta.body);
    const result = await xapi.putResource(vhd, "/import_raw_vdi/", { query: { vdi: target, format: "vhd" } });
    expect(result).toBe(target);
    expect(await xapi.call("lab.vdi_sha256", target)).toBe(await xapi.call("lab.vdi_sha256", source));
  });

  it("keeps a 2040 GiB disk sparse: writes at its end and exports only the written block", async () => {
    const xapi = await fixture.connect();
    // 2040 GiB: the largest disk XAPI exports as a VHD (Constants.max_vhd_size; above it VDI_TOO_LARGE).
    const size = 2040 * 1024 ** 3;
    const vdi = await xapi.callAsync<string>("VDI.create", {
      name_label: "huge",
      SR: xapi.pool.default_SR,
      virtual_size: size,
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
      xenstore_data: {},
      sm_config: {},
      tags: [],
    });
    const tail = Buffer.from("the last sector of a 2040 GiB disk".padEnd(512, "."));
    await xapi.call("lab.write_vdi", vdi, size - 512, tail.toString("base64"));
    expect(Buffer.from(await xapi.call<string>("lab.read_vdi", vdi, size - 512, 512), "base64")).toEqual(tail);
    const vhd = await xapi.getResource("/export_raw_vdi/", { query: { vdi, format: "vhd" } });
    const items = [];
    for await (const item of parseVhdStream(vhd.body)) items.push(item.kind === "block" ? item.index : item.footer.currentSize);
    await vhd.task;
    expect(items).toEqual([size, size / BLOCK - 1]);
  });
});
