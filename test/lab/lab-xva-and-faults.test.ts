import { once } from "node:events";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { skipReasonForTools } from "../support/system-tools.js";
import { createLabFixture, diskOf, readAll, vmNamed, type LabFixture } from "./lab-fixture.js";

describe.skipIf(skipReasonForTools(["zstd"]))("the lab's XVA export/import and faults", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  for (const compression of ["none", "gzip", "zstd"]) {
    it(`re-imports its own XVA export (${compression}) as a new VM whose disks hash the same`, async () => {
      const xapi = await fixture.connect();
      const vm = vmNamed(xapi, "win-fat");
      const response = await xapi.getResource("/export/", {
        query: { ref: vm.$ref, use_compression: compression === "gzip" ? "true" : compression },
      });
      expect(response.headers["task-id"]).toMatch(/^OpaqueRef:/);
      const xva = await readAll(response.body);
      await response.task;
      // A stream without length: the client's 1 PiB Content-Length hack, probe PUT first.
      const [imported] = await xapi.putResource<string[]>(Readable.from([xva]), "/import/", {
        query: { sr_id: xapi.pool.default_SR as string },
      });
      await xapi.barrier();
      const copy = xapi.getObjectByRef(imported);
      expect(copy.uuid).not.toBe(vm.uuid);
      expect(copy).toMatchObject({ name_label: "win-fat", power_state: "Halted", tags: ["test", "windows"] });
      expect(copy.current_operations).toEqual({});
      expect(await xapi.call("lab.vdi_sha256", diskOf(xapi, copy))).toBe(await xapi.call("lab.vdi_sha256", diskOf(xapi, vm)));
    });
  }

  it("refuses to export a running VM with VM_BAD_POWER_STATE", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "web-ext4");
    const attempt = xapi.getResource("/export/", { query: { ref: vm.$ref } });
    await expect(attempt).rejects.toThrow(/unexpected 404/);
  });

  it("drops an export after N bytes and fails its task (export_drop_after_bytes)", async () => {
    const xapi = await fixture.connect();
    await xapi.call("lab.set_fault", "export_drop_after_bytes", { bytes: 100_000 });
    const vdi = diskOf(xapi, vmNamed(xapi, "db-data"));
    const response = await xapi.getResource("/export_raw_vdi/", { query: { vdi, format: "raw" } });
    // The body is close-delimited, as XAPI sends it: a cut looks like a short body to HTTP, and the task fails.
    expect((await readAll(response.body)).length).toBe(100_000);
    await expect(response.task).rejects.toMatchObject({ code: "VDI_IO_ERROR" });
    await xapi.call("lab.clear_faults");
    const again = await xapi.getResource("/export_raw_vdi/", { query: { vdi, format: "raw" } });
    expect((await readAll(again.body)).length).toBe(8 * 1024 * 1024);
  });

  it("limits export speed (export_bytes_per_second)", async () => {
    const xapi = await fixture.connect();
    await xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 4 * 1024 * 1024 });
    const started = Date.now();
    const response = await xapi.getResource("/export_raw_vdi/", { query: { vdi: diskOf(xapi, vmNamed(xapi, "db-data")), format: "raw" } });
    expect((await readAll(response.body)).length).toBe(8 * 1024 * 1024);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1700);
  });

  it("fails the next snapshot only (snapshot_fails) with the error the client sees", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "web-ext4");
    await xapi.call("lab.set_fault", "snapshot_fails", { code: "SR_BACKEND_FAILURE_82" });
    await expect(xapi.callAsync("VM.snapshot", vm.$ref, "broken")).rejects.toMatchObject({ code: "SR_BACKEND_FAILURE_82" });
    await expect(xapi.callAsync("VM.snapshot", vm.$ref, "works")).resolves.toMatch(/^OpaqueRef:/);
  });

  it("switches quiesce between removed, not supported and working", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "web-ext4");
    await expect(xapi.callAsync("VM.snapshot_with_quiesce", vm.$ref, "q")).rejects.toMatchObject({ code: "MESSAGE_REMOVED" });
    await xapi.call("lab.set_fault", "quiesce", { mode: "not_supported" });
    await expect(xapi.callAsync("VM.snapshot_with_quiesce", vm.$ref, "q")).rejects.toMatchObject({
      code: "VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED",
      params: [vm.$ref],
    });
    await xapi.call("lab.set_fault", "quiesce", { mode: "works" });
    const snapshot = await xapi.callAsync<string>("VM.snapshot_with_quiesce", vm.$ref, "q");
    await xapi.barrier();
    expect(xapi.getObjectByRef(snapshot).snapshot_info).toMatchObject({ "disk-snapshot-type": "quiesced" });
  });

  it("fails VM.start while boot_fails is set", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "win-fat");
    await xapi.call("lab.set_fault", "boot_fails", { count: 1 });
    await expect(xapi.callAsync("VM.start", vm.$ref, false, false)).rejects.toMatchObject({ code: "BOOTLOADER_FAILED" });
    await xapi.callAsync("VM.start", vm.$ref, false, false);
    await xapi.barrier();
    expect(xapi.getObjectByRef(vm.$ref).power_state).toBe("Running");
  });

  it("makes the host unreachable for N seconds, then serves again (host_unreachable)", async () => {
    const xapi = await fixture.connect();
    const back = once(fixture.lab.pool, "reachable");
    await xapi.call("lab.set_fault", "host_unreachable", { seconds: 1 });
    await expect(xapi.call("VM.get_all")).rejects.toThrow(/other side closed|ECONNRESET|socket/i);
    await back;
    const vms = await xapi.call<string[]>("VM.get_all");
    expect(vms.length).toBeGreaterThan(4);
  });

  it("rejects unknown faults with INVALID_VALUE", async () => {
    const xapi = await fixture.connect();
    await expect(xapi.call("lab.set_fault", "meteor", {})).rejects.toMatchObject({ code: "INVALID_VALUE" });
  });
});
