import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { NbdConnection, type NbdTarget } from "../../server/xapi/nbd/nbd-connection.js";
import { NbdError } from "../../server/xapi/nbd/nbd-error.js";
import { NbdExport } from "../../server/xapi/nbd/nbd-export.js";
import { createLabFixture, diskOf, vmNamed, type LabFixture } from "../lab/lab-fixture.js";
import { eventually } from "../support/eventually.js";
import { skipReasonForTools } from "../support/system-tools.js";

const MIB = 1024 * 1024;

async function labTarget(xapi: Xapi, vdi: string): Promise<NbdTarget> {
  const network = (await xapi.call<string[]>("network.get_all"))[0];
  await xapi.call("network.add_purpose", network, "insecure_nbd");
  const [info] = await xapi.call<Array<{ exportname: string; address: string; port: number }>>("VDI.get_nbd_info", vdi);
  return { address: info.address, port: Number(info.port), exportName: info.exportname };
}

/** Reads the whole export in `chunk`-sized reads, all in flight at once. */
async function readWhole(source: { size: number; read(offset: number, length: number): Promise<Buffer> }, chunk: number): Promise<Buffer> {
  const reads: Promise<Buffer>[] = [];
  for (let offset = 0; offset < source.size; offset += chunk) reads.push(source.read(offset, Math.min(chunk, source.size - offset)));
  return Buffer.concat(await Promise.all(reads));
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("Cairn's NBD client against the lab's NBD server", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture({ diskSizeBytes: 16 * MIB });
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("reads a whole VDI through several connections with many reads in flight, byte-exact", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "db-data"));
    const target = await labTarget(xapi, vdi);
    const exported = await NbdExport.open(target, { connections: 3 });
    try {
      expect(exported.connectionCount).toBe(3);
      expect(exported.size).toBe(Number(await xapi.call("VDI.get_virtual_size", vdi)));
      expect(sha256(await readWhole(exported, 256 * 1024))).toBe(await xapi.call("lab.vdi_sha256", vdi));
      // In-order blocks with a window of reads in flight.
      const indexes = [0, 3, 5, 7];
      const seen: number[] = [];
      for await (const block of exported.blocks(indexes, 2 * MIB, 3)) {
        seen.push(block.index);
        const expected = Buffer.from(await xapi.call<string>("lab.read_vdi", vdi, block.index * 2 * MIB, 2 * MIB), "base64");
        expect(Buffer.concat(block.data).equals(expected)).toBe(true);
      }
      expect(seen).toEqual(indexes);
      expect(exported.bytesRead).toBe(exported.size + indexes.length * 2 * MIB);
    } finally {
      await exported.close();
    }
  });

  it("fails with typed errors: refused export, unreachable server, a connection cut mid-read", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "db-data"));
    const target = await labTarget(xapi, vdi);

    const refused = await NbdConnection.connect({ ...target, exportName: "/nope?session_id=OpaqueRef:nope" }).catch((error) => error);
    expect(refused).toBeInstanceOf(NbdError);
    expect(refused).toMatchObject({ failure: "refused" });
    expect(refused.message).not.toContain("OpaqueRef:nope"); // the export name holds a session: never in a message

    const closedPort = await freePort();
    await expect(NbdConnection.connect({ ...target, port: closedPort })).rejects.toMatchObject({ failure: "unreachable" });

    await xapi.call("lab.set_fault", "nbd_drop_after_bytes", { bytes: 3 * MIB });
    const exported = await NbdExport.open(target, { connections: 1 });
    try {
      // One read whose reply is cut in the middle of its data.
      await expect(exported.read(0, 4 * MIB)).rejects.toMatchObject({ failure: "broken" });
    } finally {
      await exported.close();
    }
    const again = await NbdExport.open(target, { connections: 1 });
    try {
      await expect(readWhole(again, MIB)).rejects.toMatchObject({ failure: "broken" });
      await expect(again.read(0, 512)).rejects.toMatchObject({ failure: "broken" });
    } finally {
      await again.close();
    }
    // The fault counts per connection: a new one reads again.
    const fresh = await NbdExport.open(target, { connections: 1 });
    try {
      await expect(fresh.read(0, 512)).resolves.toHaveLength(512);
    } finally {
      await fresh.close();
    }
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.skipIf(skipReasonForTools(["qemu-nbd"]))("Cairn's NBD client against qemu-nbd (an outside server)", () => {
  let dir: string;
  let image: Buffer;
  let qemu: ChildProcess | undefined;
  let target: NbdTarget;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-nbd-"));
    // Not a multiple of 2 MiB: the last block is short.
    image = randomBytes(5 * MIB + 4096);
    await writeFile(join(dir, "disk.raw"), image);
    const port = await freePort();
    qemu = spawn(
      "qemu-nbd",
      [
        "--read-only",
        "--persistent",
        "--shared=4",
        "-f",
        "raw",
        "-x",
        "disk",
        "-b",
        "127.0.0.1",
        "-p",
        String(port),
        join(dir, "disk.raw"),
      ],
      {
        stdio: "ignore",
      },
    );
    target = { address: "127.0.0.1", port, exportName: "disk" };
    await eventually("qemu-nbd to listen", async () => {
      const connection = await NbdConnection.connect(target);
      await connection.close();
      return true;
    });
  });
  afterAll(async () => {
    if (qemu !== undefined && qemu.exitCode === null) {
      const exited = new Promise((resolve) => qemu?.once("exit", resolve));
      qemu.kill("SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("negotiates with NBD_OPT_GO and reads the file byte-exact through two connections", async () => {
    const exported = await NbdExport.open(target, { connections: 2 });
    try {
      expect(exported.size).toBe(image.length);
      expect((await readWhole(exported, 192 * 1024)).equals(image)).toBe(true);
      const blocks: Buffer[] = [];
      for await (const block of exported.blocks([0, 1, 2], 2 * MIB)) blocks.push(Buffer.concat(block.data));
      expect(blocks[2].subarray(0, MIB + 4096).equals(image.subarray(4 * MIB))).toBe(true);
      expect(blocks[2].subarray(MIB + 4096).every((byte) => byte === 0)).toBe(true);
    } finally {
      await exported.close();
    }
  });

  it("says the export was refused for an unknown name", async () => {
    await expect(NbdConnection.connect({ ...target, exportName: "other" })).rejects.toMatchObject({ failure: "refused" });
  });
});

/** A self-signed certificate, as a pool host has. */
async function makeCertificate(dir: string, name: string): Promise<{ key: string; cert: string }> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
    ],
    {
      stdio: "pipe",
    },
  );
  return { key: await readFile(key, "utf8"), cert: await readFile(cert, "utf8") };
}

describe.skipIf(skipReasonForTools(["openssl"]))("Cairn's NBD client over TLS (network purpose nbd)", () => {
  let fixture: LabFixture;
  let certDir: string;
  let other: { key: string; cert: string };
  beforeEach(async () => {
    certDir = await mkdtemp(join(tmpdir(), "cairn-nbd-tls-"));
    const host = await makeCertificate(certDir, "lab-host");
    other = await makeCertificate(certDir, "someone-else");
    fixture = await createLabFixture({ diskSizeBytes: 16 * MIB, tls: host });
  });
  afterEach(async () => {
    await fixture.dispose();
    await rm(certDir, { recursive: true, force: true });
  });

  it("goes TLS with the certificate XAPI gives, refuses plain NBD and another certificate", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "db-data"));
    const network = (await xapi.call<string[]>("network.get_all"))[0];
    await xapi.call("network.add_purpose", network, "nbd");
    const [info] = await xapi.call<Array<{ exportname: string; address: string; port: number; cert: string }>>("VDI.get_nbd_info", vdi);
    expect(info.cert).toContain("BEGIN CERTIFICATE");
    const target: NbdTarget = { address: info.address, port: Number(info.port), exportName: info.exportname, cert: info.cert };

    const exported = await NbdExport.open(target, { connections: 2 });
    try {
      expect(sha256(await readWhole(exported, 512 * 1024))).toBe(await xapi.call("lab.vdi_sha256", vdi));
    } finally {
      await exported.close();
    }
    const plain = await NbdConnection.connect({ ...target, cert: undefined }).catch((error) => error);
    expect(plain).toMatchObject({ failure: "refused" });
    expect(plain.message).toMatch(/requires TLS/);
    const impostor = await NbdConnection.connect({ ...target, cert: other.cert }).catch((error) => error);
    expect(impostor).toMatchObject({ failure: "refused" });
    expect(impostor.message).toMatch(/certificate other than the one XAPI gave/);
  });
});
