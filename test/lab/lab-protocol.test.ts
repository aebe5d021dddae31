import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLabFixture, diskOf, objectsOfType, vmNamed, type LabFixture } from "./lab-fixture.js";
import { createMethodTable } from "../../server/lab/lab-pool.js";
import { resolveCall } from "../../server/lab/rpc-method.js";

async function rawCall(url: string, method: string, params: unknown[]): Promise<{ status: number; type: string | null; body: any }> {
  const response = await fetch(`${url}/jsonrpc`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", method, params, id: 0 }),
  });
  const text = await response.text();
  return { status: response.status, type: response.headers.get("content-type"), body: response.status === 200 ? JSON.parse(text) : text };
}

describe("the lab speaks XAPI to the unmodified xen-api client", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("lets the client connect and see every object of the pool in xapi.objects", async () => {
    const xapi = await fixture.connect();
    expect(objectsOfType(xapi, "pool")).toHaveLength(1);
    expect(xapi.pool.name_label).toBe("lab");
    expect(
      objectsOfType(xapi, "SR")
        .map((sr) => sr.name_label)
        .sort(),
    ).toEqual(["ISO library", "Local storage", "Second storage"]);
    const vms = objectsOfType(xapi, "VM").filter((vm) => vm.is_control_domain !== true && vm.is_a_template !== true);
    expect(Object.fromEntries(vms.map((vm) => [vm.name_label, vm.power_state]))).toEqual({
      "web-ext4": "Running",
      "win-fat": "Halted",
      "db-data": "Paused",
      scratch: "Suspended",
    });
    expect(vmNamed(xapi, "web-ext4").tags).toEqual(["prod", "web"]);
    expect(objectsOfType(xapi, "host")[0].address).toBe("127.0.0.1");
    const vdi = xapi.getObjectByRef(diskOf(xapi, vmNamed(xapi, "web-ext4")));
    expect(vdi.virtual_size).toBe(8 * 1024 * 1024);
  });

  it("resolves callAsync('VM.snapshot') with the ref of a snapshot seen through events", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "web-ext4");
    const ref = await xapi.callAsync<string>("VM.snapshot", vm.$ref, "nightly");
    expect(ref).toMatch(/^OpaqueRef:/);
    await xapi.barrier();
    const snapshot = xapi.getObjectByRef(ref);
    expect(snapshot).toMatchObject({
      is_a_snapshot: true,
      snapshot_of: vm.$ref,
      name_label: "nightly",
      is_a_template: true,
      power_state: "Halted",
    });
    expect(xapi.getObjectByRef(vm.$ref).snapshots).toContain(ref);
    const snapshotVdi = xapi.getObjectByRef(diskOf(xapi, snapshot));
    expect(snapshotVdi.snapshot_of).toBe(diskOf(xapi, vm));
  });

  it("completes barrier() through a pool mod event and removes its key", async () => {
    const xapi = await fixture.connect();
    await xapi.barrier();
    await xapi.barrier();
    const otherConfig = await xapi.call<Record<string, string>>("pool.get_other_config", xapi.pool.$ref);
    expect(Object.keys(otherConfig).filter((key) => key.startsWith("xo:barrier:")).length).toBeLessThanOrEqual(1);
  });

  it("answers JSON-RPC with exactly application/json and XAPI's error shape", async () => {
    const response = await rawCall(fixture.lab.url, "VM.get_all", ["OpaqueRef:nope"]);
    expect(response.type).toBe("application/json");
    expect(response.body).toEqual({ jsonrpc: "2.0", error: { code: 1, message: "SESSION_INVALID", data: ["OpaqueRef:nope"] }, id: 0 });
    const malformed = await fetch(`${fixture.lab.url}/jsonrpc`, { method: "POST", body: "{not json" });
    expect(malformed.status).toBe(500);
    await malformed.text();
  });

  it("rejects a wrong password with SESSION_AUTHENTICATION_FAILED", async () => {
    await expect(fixture.connect({ password: "wrong", watchEvents: false })).rejects.toMatchObject({
      code: "SESSION_AUTHENTICATION_FAILED",
      params: ["root", "Authentication failure"],
    });
  });

  it("gives MESSAGE_METHOD_UNKNOWN, MESSAGE_PARAMETER_COUNT_MISMATCH and HANDLE_INVALID as XAPI spells them", async () => {
    const xapi = await fixture.connect();
    await expect(xapi.call("VM.fly", "x")).rejects.toMatchObject({ code: "MESSAGE_METHOD_UNKNOWN", params: ["VM.fly"] });
    const vm = vmNamed(xapi, "win-fat");
    await expect(xapi.call("VM.clone", vm.$ref)).rejects.toMatchObject({
      code: "MESSAGE_PARAMETER_COUNT_MISMATCH",
      params: ["VM.clone", "2", "1"],
    });
    const clone = await xapi.callAsync<string>("VM.clone", vm.$ref, "doomed");
    await xapi.callAsync("VM.destroy", clone);
    await expect(xapi.call("VM.get_record", clone)).rejects.toMatchObject({ code: "HANDLE_INVALID", params: ["VM", clone] });
    await expect(xapi.call("VM.destroy", vmNamed(xapi, "web-ext4").$ref)).rejects.toMatchObject({
      code: "VM_BAD_POWER_STATE",
      params: [vmNamed(xapi, "web-ext4").$ref, "halted, suspended", "running"],
    });
  });

  it("gives SESSION_INVALID for a bad session, and the client logs in again", async () => {
    const bad = await rawCall(fixture.lab.url, "VM.get_all_records", ["OpaqueRef:00000000-0000-0000-0000-000000000000"]);
    expect(bad.body.error.message).toBe("SESSION_INVALID");
    const xapi = await fixture.connect();
    await xapi.call("lab.set_fault", "session_invalid", {});
    // The next call fails with SESSION_INVALID, and the client re-opens its session once and retries.
    const vms = await xapi.call<string[]>("VM.get_all");
    expect(vms.length).toBeGreaterThan(4);
  });

  it("lists methods without a session, with get_all_records for every class and the lab controls", async () => {
    const response = await rawCall(fixture.lab.url, "system.listMethods", []);
    expect(response.body.result).toEqual(
      expect.arrayContaining(["VM.get_all_records", "task.get_all_records", "VM.snapshot", "lab.scribble", "lab.set_fault"]),
    );
  });

  it("reports a task's whole life through events and a del event after task.destroy", async () => {
    const xapi = await fixture.connect();
    const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
    const taskRef = await xapi.call<string>("Async.VDI.snapshot", vdi, {});
    const result = await xapi.watchTask<string>(taskRef);
    expect(xapi.getObjectByRef(taskRef)).toMatchObject({ status: "success", progress: 1 });
    expect(xapi.getObjectByRef(result).is_a_snapshot).toBe(true);
    await xapi.call("task.destroy", taskRef);
    await xapi.barrier();
    expect(xapi.getObjectByRef(taskRef, undefined)).toBeUndefined();
  });

  it("keeps its state across a restart in the same folder", async () => {
    const xapi = await fixture.connect();
    const vm = vmNamed(xapi, "win-fat");
    await xapi.call("VM.add_tags", vm.$ref, "kept");
    const vdi = diskOf(xapi, vm);
    await xapi.call("lab.scribble", vdi, 2, "restart");
    const hash = await xapi.call<string>("lab.vdi_sha256", vdi);
    await xapi.disconnect();
    await fixture.lab.stop();
    const again = await createLabFixture({ dir: fixture.dir });
    try {
      const second = await again.connect();
      expect(vmNamed(second, "win-fat").tags).toContain("kept");
      expect(await second.call("lab.vdi_sha256", vdi)).toBe(hash);
    } finally {
      await again.dispose();
    }
  });

  // How fast it starts is printed, not asserted: on a busy 2-core machine a start took 4 s where a quiet one takes 0.3 s.
  it("starts a fresh pool whose disks are ready to read as soon as it answers", async () => {
    const started = performance.now();
    const other = await createLabFixture();
    console.log(`fresh lab pool started in ${Math.round(performance.now() - started)} ms`);
    try {
      const xapi = await other.connect();
      const vdis = Object.values(xapi.objects.all as Record<string, { $type: string; $ref: string; is_a_snapshot?: boolean }>).filter(
        (o) => o.$type === "VDI",
      );
      expect(vdis.length).toBeGreaterThan(0);
      for (const vdi of vdis) expect(String(await xapi.call("lab.vdi_sha256", vdi.$ref))).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await other.dispose();
    }
  });
});

describe("the lab's call checks, in XAPI's order and counts (gen_server.ml)", () => {
  const methods = createMethodTable();
  const live = "OpaqueRef:live";
  const checkSession = (ref: unknown) => {
    if (ref !== live) throw Object.assign(new Error("SESSION_INVALID"), { code: "SESSION_INVALID", params: [String(ref)] });
    return ref;
  };

  it("counts parameters without the session and without defaulted ones", () => {
    expect(() => resolveCall(methods, "VM.start", [live, "OpaqueRef:vm"], checkSession)).toThrow(
      expect.objectContaining({ code: "MESSAGE_PARAMETER_COUNT_MISMATCH", params: ["VM.start", "3", "1"] }),
    );
    // VM.snapshot's ignore_vdis has a default: two arguments are enough, and Async. reports the plain name.
    expect(resolveCall(methods, "Async.VM.snapshot", [live, "OpaqueRef:vm", "name"], checkSession)).toMatchObject({
      name: "VM.snapshot",
      isAsync: true,
      args: ["OpaqueRef:vm", "name"],
    });
    expect(() => resolveCall(methods, "Async.VM.snapshot", [live, "OpaqueRef:vm"], checkSession)).toThrow(
      expect.objectContaining({ params: ["VM.snapshot", "2", "1"] }),
    );
  });

  it("ignores surplus arguments only where the method has defaulted parameters", () => {
    expect(resolveCall(methods, "VM.snapshot", [live, "OpaqueRef:vm", "name", [], "surplus"], checkSession).args).toEqual([
      "OpaqueRef:vm",
      "name",
      [],
    ]);
    expect(() => resolveCall(methods, "VM.get_record", [live, "OpaqueRef:vm", "surplus"], checkSession)).toThrow(
      expect.objectContaining({ code: "MESSAGE_PARAMETER_COUNT_MISMATCH", params: ["VM.get_record", "1", "2"] }),
    );
  });

  it("checks the name, then the count, then the session", () => {
    // A known method with a wrong count and a dead session: the count is reported.
    expect(() => resolveCall(methods, "VM.start", ["OpaqueRef:dead"], checkSession)).toThrow(
      expect.objectContaining({ code: "MESSAGE_PARAMETER_COUNT_MISMATCH", params: ["VM.start", "3", "0"] }),
    );
    expect(() => resolveCall(methods, "VM.get_record", ["OpaqueRef:dead", "OpaqueRef:vm"], checkSession)).toThrow(
      expect.objectContaining({ code: "SESSION_INVALID" }),
    );
    // An unknown name takes XAPI's extension path: the session is checked first, then the name.
    expect(() => resolveCall(methods, "VM.fly", ["OpaqueRef:dead"], checkSession)).toThrow(
      expect.objectContaining({ code: "SESSION_INVALID" }),
    );
    expect(() => resolveCall(methods, "VM.fly", [live], checkSession)).toThrow(
      expect.objectContaining({ code: "MESSAGE_METHOD_UNKNOWN", params: ["VM.fly"] }),
    );
    expect(() => resolveCall(methods, "VM.fly", [], checkSession)).toThrow(expect.objectContaining({ code: "MESSAGE_METHOD_UNKNOWN" }));
  });
});
