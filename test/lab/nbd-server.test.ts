import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Xapi } from "xen-api";
import { skipReasonForTools } from "../support/system-tools.js";
import { createLabFixture, diskOf, vmNamed, type LabFixture } from "./lab-fixture.js";

// Asynchronous on purpose: the lab serves from this very process.
const run = promisify(execFile);

interface NbdInfo {
  exportname: string;
  address: string;
  port: number;
}

async function offerNbd(xapi: Xapi, vdi: string): Promise<NbdInfo> {
  const network = (await xapi.call<string[]>("network.get_all"))[0];
  await xapi.call("network.add_purpose", network, "insecure_nbd");
  const [info] = await xapi.call<NbdInfo[]>("VDI.get_nbd_info", vdi);
  return info;
}

/** libnbd's NBD URI: the export name is the path without its first slash, percent-decoded. */
function nbdUri(info: NbdInfo): string {
  return `nbd://${info.address}:${info.port}/${encodeURIComponent(info.exportname)}`;
}

describe.skipIf(skipReasonForTools(["nbdinfo", "nbdcopy"]))("the lab's NBD server, read by libnbd's nbdinfo and nbdcopy", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture({ diskSizeBytes: 16 * 1024 * 1024 });
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("serves a VDI read-only: nbdinfo sees its size, nbdcopy copies it byte-exact", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "web-ext4"));
    await xapi.call("lab.scribble", vdi, 3, "nbd");
    const info = await offerNbd(xapi, vdi);

    const { stdout } = await run("nbdinfo", ["--json", nbdUri(info)]);
    const described = JSON.parse(stdout) as { exports: Array<{ "export-size": number; is_read_only: boolean }> };
    expect(described.exports[0]["export-size"]).toBe(Number(await xapi.call("VDI.get_virtual_size", vdi)));
    expect(described.exports[0].is_read_only).toBe(true);

    const copy = join(fixture.dir, "copy.raw");
    await run("nbdcopy", ["--connections=2", "--requests=8", nbdUri(info), copy]);
    const sha = createHash("sha256")
      .update(await readFile(copy))
      .digest("hex");
    expect(sha).toBe(await xapi.call("lab.vdi_sha256", vdi));
  });

  it("refuses an export name without a live session, and a cbt_metadata VDI", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "web-ext4"));
    const info = await offerNbd(xapi, vdi);
    const forged = { ...info, exportname: info.exportname.replace(/session_id=.*$/, "session_id=OpaqueRef:nope") };
    await expect(run("nbdinfo", ["--json", nbdUri(forged)])).rejects.toMatchObject({ stderr: expect.stringMatching(/opt_go/) });

    await xapi.call("VDI.enable_cbt", vdi);
    const snapshot = await xapi.call<string>("VDI.snapshot", vdi, {});
    const [snapshotInfo] = await xapi.call<NbdInfo[]>("VDI.get_nbd_info", snapshot);
    await run("nbdinfo", ["--json", nbdUri(snapshotInfo)]);
    await xapi.call("VDI.data_destroy", snapshot);
    await expect(run("nbdinfo", ["--json", nbdUri(snapshotInfo)])).rejects.toMatchObject({ stderr: expect.stringMatching(/opt_go/) });
  });

  it("cuts connections with the nbd_drop_after_bytes fault: nbdcopy fails", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "web-ext4"));
    const info = await offerNbd(xapi, vdi);
    await xapi.call("lab.set_fault", "nbd_drop_after_bytes", { bytes: 1024 * 1024 });
    await expect(run("nbdcopy", [nbdUri(info), join(fixture.dir, "cut.raw")])).rejects.toBeDefined();
  });
});

describe.skipIf(skipReasonForTools(["nbdcopy", "openssl"]))("the lab's NBD server over TLS (network purpose nbd), read by nbdcopy", () => {
  let fixture: LabFixture;
  let certDir: string;
  beforeEach(async () => {
    certDir = await mkdtemp(join(tmpdir(), "cairn-lab-nbd-tls-"));
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
        join(certDir, "k"),
        "-out",
        join(certDir, "c"),
        "-days",
        "2",
        "-subj",
        "/CN=lab",
      ],
      { stdio: "pipe" },
    );
    const tls = { key: await readFile(join(certDir, "k"), "utf8"), cert: await readFile(join(certDir, "c"), "utf8") };
    fixture = await createLabFixture({ diskSizeBytes: 16 * 1024 * 1024, tls });
  });
  afterEach(async () => {
    await fixture.dispose();
    await rm(certDir, { recursive: true, force: true });
  });

  it("requires TLS once a network has the purpose nbd; nbdcopy over TLS copies the VDI byte-exact", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "web-ext4"));
    const network = (await xapi.call<string[]>("network.get_all"))[0];
    await xapi.call("network.add_purpose", network, "nbd");
    const [info] = await xapi.call<NbdInfo[]>("VDI.get_nbd_info", vdi);
    await expect(run("nbdinfo", ["--json", nbdUri(info)])).rejects.toBeDefined();
    // The host certificate is self-signed: libnbd is told not to verify it (Cairn's client pins it instead).
    const secure = `nbds://${info.address}:${info.port}/${encodeURIComponent(info.exportname)}?tls-verify-peer=false`;
    const copy = join(fixture.dir, "copy-tls.raw");
    await run("nbdcopy", [secure, copy]);
    const sha = createHash("sha256")
      .update(await readFile(copy))
      .digest("hex");
    expect(sha).toBe(await xapi.call("lab.vdi_sha256", vdi));
  });
});
