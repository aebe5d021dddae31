import { inflateRawSync, gunzipSync } from "node:zlib";
import { Readable } from "node:stream";
import tarStream from "tar-stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { knownFiles } from "../../server/lab/known-files.js";
import { startBackupFixture, expectSuccess, type BackupFixture } from "../support/backup-fixture.js";
import { graphql, type VariablesOf } from "../support/graphql.js";

const KNOWN = knownFiles("cairn");
const NOTES = "/home/alice/notes.txt";
const REPORT = "/DOCS/REPORT.TXT";

/** Files of a tar.gz: path -> bytes (folders and symlinks as empty markers). */
async function untarGz(body: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: unknown) => void chunks.push(chunk as Buffer));
      stream.on("end", () => {
        if (header.type === "file") files.set(`/${header.name}`, Buffer.concat(chunks));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([gunzipSync(body)]).pipe(extract);
  await done;
  return files;
}

/** Files of a zip, read from its central directory (archiver writes data descriptors, so local headers carry no sizes). */
function unzip(body: Buffer): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const eocd = body.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = body.readUInt16LE(eocd + 10);
  let at = body.readUInt32LE(eocd + 16);
  for (let i = 0; i < count; i++) {
    const method = body.readUInt16LE(at + 10);
    const compressed = body.readUInt32LE(at + 20);
    const nameLength = body.readUInt16LE(at + 28);
    const extraLength = body.readUInt16LE(at + 30);
    const commentLength = body.readUInt16LE(at + 32);
    const local = body.readUInt32LE(at + 42);
    const name = body.toString("utf8", at + 46, at + 46 + nameLength);
    const dataStart = local + 30 + body.readUInt16LE(local + 26) + body.readUInt16LE(local + 28);
    const data = body.subarray(dataStart, dataStart + compressed);
    if (!name.endsWith("/")) files.set(`/${name}`, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    at += 46 + nameLength + extraLength + commentLength;
  }
  return files;
}

describe("file-level restore of delta restore points", () => {
  let f: BackupFixture;
  /** Per VM name: [restore point before the change, restore point after]. */
  const points = new Map<string, [string, string]>();
  const changed = new Map<string, Buffer>();

  /** Overwrites a file's bytes in place on the VM's disk (same length, so the file system stays consistent). */
  async function rewriteInPlace(vmName: string, original: Buffer, replacement: Buffer) {
    const [disk] = f.diskRefs(f.vm(vmName).ref);
    const size = Number((f.xapi.getObjectByRef(disk) as unknown as { virtual_size: number }).virtual_size);
    const image = Buffer.from(String(await f.xapi.call("lab.read_vdi", disk, 0, size)), "base64");
    const offset = image.indexOf(original);
    expect(offset).toBeGreaterThan(0);
    expect(image.lastIndexOf(original)).toBe(offset);
    await f.xapi.call("lab.write_vdi", disk, offset, replacement.toString("base64"));
  }

  beforeAll(async () => {
    f = await startBackupFixture();
    const vms = ["web-ext4", "win-fat"].map((name) => f.vm(name));
    const job = await f.createJob({
      name: "delta for files",
      mode: "DELTA",
      selection: { vmUuids: vms.map((vm) => vm.uuid) },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 5 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const notes = KNOWN.ext4.get(NOTES)!;
    changed.set(NOTES, Buffer.from(notes.toString().replace("Notes of alice", "NOTES OF ALICE")));
    await rewriteInPlace("web-ext4", notes, changed.get(NOTES)!);
    const report = KNOWN.fat.get(REPORT)!;
    changed.set(REPORT, Buffer.from(report.toString().replace("Quarterly", "QUARTERLY")));
    await rewriteInPlace("win-fat", report, changed.get(REPORT)!);
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const data = await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id vmName timestamp } } }"), {
      j: job.id,
    });
    for (const vm of ["web-ext4", "win-fat"]) {
      const mine = data.restorePoints.nodes
        .filter((p: { vmName: string }) => p.vmName === vm)
        .sort((a: any, b: any) => a.timestamp.localeCompare(b.timestamp));
      expect(mine).toHaveLength(2);
      points.set(vm, [mine[0].id, mine[1].id]);
    }
  });
  afterAll(() => f?.stop());

  const browse = (id: string, path: string, partition: number | null = null, disk = 0) =>
    f.server.graphql(
      graphql(
        "query($id: ID!, $d: Int!, $p: Int, $path: String!) { browseRestorePoint(id: $id, disk: $d, partition: $p, path: $path) { name path type size modifiedAt } }",
      ),
      { id, d: disk, p: partition, path },
      f.token,
    );

  const RESTORE_FILES = graphql("mutation($input: FileRestoreInput!) { restoreFiles(input: $input) { url expiresAt } }");
  const prepare = (input: VariablesOf<typeof RESTORE_FILES>["input"]) => f.server.graphql(RESTORE_FILES, { input }, f.token);

  async function download(input: VariablesOf<typeof RESTORE_FILES>["input"]) {
    const prepared = await prepare(input);
    expect(prepared.errors).toBeUndefined();
    const { url, expiresAt } = prepared.data!.restoreFiles;
    expect(url).toMatch(/^\/download\/[A-Za-z0-9_-]{40,}$/);
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(4 * 60_000);
    const response = await fetch(`${f.server.url}${url}`);
    expect(response.status).toBe(200);
    return { url, body: Buffer.from(await response.arrayBuffer()), type: response.headers.get("content-type") };
  }

  it("lists the ext4 partition of an MBR disk (partition null = the first readable partition), with types, sizes and times", async () => {
    const [before] = points.get("web-ext4")!;
    const root = await browse(before, "/");
    expect(root.errors).toBeUndefined();
    const names = root.data!.browseRestorePoint.map((e: { name: string }) => e.name);
    expect(names).toEqual(expect.arrayContaining(["etc", "home", "var", "README.txt"]));
    const etc = (await browse(before, "/etc", 1)).data!.browseRestorePoint;
    expect(etc).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: "hostname", path: "/etc/hostname", type: "FILE", size: KNOWN.ext4.get("/etc/hostname")!.length }),
        expect.objectContaining({ name: "os-release", type: "FILE", size: KNOWN.ext4.get("/etc/os-release")!.length }),
      ]),
    );
    expect(root.data!.browseRestorePoint.find((e: { name: string }) => e.name === "home")).toMatchObject({
      type: "DIRECTORY",
      path: "/home",
    });
    for (const entry of etc) expect(Date.parse(entry.modifiedAt ?? "")).toBeGreaterThan(0);
  });

  it("lists the FAT partition of a GPT disk", async () => {
    const [before] = points.get("win-fat")!;
    const root = (await browse(before, "/")).data!.browseRestorePoint;
    expect(root.map((e: { name: string }) => e.name)).toEqual(expect.arrayContaining(["README.TXT", "EFI", "DOCS"]));
    const boot = (await browse(before, "/EFI/BOOT", 1)).data!.browseRestorePoint;
    expect(boot).toEqual([
      expect.objectContaining({ name: "BOOTX64.EFI", type: "FILE", size: KNOWN.fat.get("/EFI/BOOT/BOOTX64.EFI")!.length }),
    ]);
  });

  it("downloads every known ext4 file as a tar.gz equal byte for byte, and shows each file as of its restore point", async () => {
    const [before, after] = points.get("web-ext4")!;
    const first = await download({
      restorePointId: before,
      disk: 0,
      paths: ["/etc", "/home", "/var/lib/app/data.bin", "/README.txt"],
      format: "TAR_GZ",
    });
    expect(first.type).toBe("application/gzip");
    const files = await untarGz(first.body);
    for (const [path, content] of KNOWN.ext4) expect(files.get(path)?.equals(content), path).toBe(true);

    const second = await untarGz((await download({ restorePointId: after, disk: 0, paths: [NOTES] })).body);
    expect([...second.keys()]).toEqual([NOTES]);
    expect(second.get(NOTES)!.equals(changed.get(NOTES)!)).toBe(true);
    expect(files.get(NOTES)!.equals(changed.get(NOTES)!)).toBe(false);
  });

  it("downloads FAT files as a zip equal byte for byte, as of each restore point", async () => {
    const [before, after] = points.get("win-fat")!;
    const zip = await download({ restorePointId: before, disk: 0, partition: 1, paths: ["/"], format: "ZIP" });
    expect(zip.type).toBe("application/zip");
    const files = unzip(zip.body);
    for (const [path, content] of KNOWN.fat) expect(files.get(path)?.equals(content), path).toBe(true);
    const later = unzip((await download({ restorePointId: after, disk: 0, paths: [REPORT], format: "ZIP" })).body);
    expect(later.get(REPORT)!.equals(changed.get(REPORT)!)).toBe(true);
  });

  it("refuses path escapes, relative paths and missing paths, naming the field", async () => {
    const [before] = points.get("web-ext4")!;
    for (const path of ["/../etc", "/etc/../../root", "etc", "", "/etc/\u0000x"]) {
      const result = await browse(before, path);
      expect(result.errors?.[0].extensions, JSON.stringify(path)).toMatchObject({ code: "BAD_USER_INPUT", field: "path" });
    }
    expect((await browse(before, "/no/such/folder")).errors?.[0].extensions?.code).toBe("NOT_FOUND");
    expect((await browse(before, "/etc/hostname")).errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "path" });
    const escape = await prepare({ restorePointId: before, disk: 0, paths: ["/etc/hostname", "/home/../../etc/shadow"] });
    expect(escape.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.paths.1" });
    const missing = await prepare({ restorePointId: before, disk: 0, paths: ["/etc/shadow"] });
    expect(missing.errors?.[0].extensions).toMatchObject({ code: "NOT_FOUND", field: "input.paths.0" });
  });

  it("reports unsupported content per partition, a bad partition or disk, and full backups, without crashing", async () => {
    const [before] = points.get("web-ext4")!;
    const whole = await browse(before, "/", 0);
    expect(whole.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "partition" });
    expect(whole.errors?.[0].message).toMatch(/as a whole: no file system Cairn recognises/);
    expect((await browse(before, "/", 2)).errors?.[0].message).toMatch(/has partitions 1; got 2/);
    expect((await browse(before, "/", null, 3)).errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "disk" });

    const db = f.vm("db-data");
    const job = await f.createJob({
      name: "delta db",
      mode: "DELTA",
      selection: { vmUuids: [db.uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    expectSuccess(await f.runToEnd(job.id, job.schedules[0].id));
    const dbPoint = (await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id } } }"), { j: job.id }))
      .restorePoints.nodes[0];
    const random = await browse(dbPoint.id, "/");
    expect(random.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
    expect(random.errors?.[0].message).toMatch(/Disk 0/);

    const full = await f.createJob({
      name: "full web",
      mode: "FULL",
      selection: { vmUuids: [f.vm("web-ext4").uuid] },
      remoteIds: [f.remoteId],
      schedules: [{ cron: "0 3 * * *", exportRetention: 1 }],
    });
    expectSuccess(await f.runToEnd(full.id, full.schedules[0].id));
    const xva = (await f.gql(graphql("query($j: ID) { restorePoints(filter: { jobId: $j }) { nodes { id } } }"), { j: full.id }))
      .restorePoints.nodes[0];
    const refused = await browse(xva.id, "/");
    expect(refused.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
    expect(refused.errors?.[0].message).toMatch(/needs a delta \(VHD\) backup/);
  });

  it("serves a download link once, needs no bearer header, and refuses it after 5 minutes", async () => {
    const [before] = points.get("web-ext4")!;
    const { url } = await download({ restorePointId: before, disk: 0, paths: ["/etc/hostname"] });
    const again = await fetch(`${f.server.url}${url}`);
    expect(again.status).toBe(404);
    expect(await again.text()).toMatch(/already used/);
    expect((await fetch(`${f.server.url}/download/not-a-token`)).status).toBe(404);

    const prepared = (await prepare({ restorePointId: before, disk: 0, paths: ["/etc/hostname"] })).data!.restoreFiles;
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 5 * 60_000 + 1000);
      const late = await fetch(`${f.server.url}${prepared.url}`);
      expect(late.status).toBe(410);
      expect(await late.text()).toMatch(/expired/);
    } finally {
      vi.useRealTimers();
    }
  });
});
