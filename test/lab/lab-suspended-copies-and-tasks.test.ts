/**
 * Issue 13, behaviour 5, held to XAPI's source (e2ee48d6883e): a copy of a Suspended VM stays Suspended and cannot be
 * started (xapi_vm_clone.ml `clone`, xapi_vm_lifecycle.ml `allowed_power_states`); tasks start with no allowed
 * operations and become cancellable only where XAPI calls set_cancellable; `task.cancel` records the request and takes
 * effect only in an operation that polls for it (xapi_task.ml `cancel`, taskHelper.ml `exn_if_cancelling`).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.js";
import { createLabFixture, diskOf, type LabFixture, vmNamed } from "./lab-fixture.js";

describe("suspended copies and cancellable tasks, as XAPI has them", () => {
  let fixture: LabFixture;
  beforeEach(async () => {
    fixture = await createLabFixture();
  });
  afterEach(async () => {
    await fixture.dispose();
  });

  it("copies a Suspended VM (when the pool allows it) as a Suspended VM with its own suspend image; VM.start on it fails", async () => {
    const xapi = await fixture.connect();
    const scratch = vmNamed(xapi, "scratch");
    const sr = xapi.pool.default_SR as string;
    // Without the pool's allow_clone_suspended_vm, only a snapshot may be copied Suspended.
    await expect(xapi.callAsync("VM.copy", scratch.$ref, "nope", sr)).rejects.toMatchObject({
      code: "VM_BAD_POWER_STATE",
      params: [scratch.$ref, "halted", "suspended"],
    });
    await xapi.call("pool.add_to_other_config", xapi.pool.$ref, "allow_clone_suspended_vm", "true");
    const copy = await xapi.callAsync<string>("VM.copy", scratch.$ref, "scratch-copy", sr);
    await xapi.barrier();
    const record = xapi.getObjectByRef(copy);
    expect(record.power_state).toBe("Suspended");
    expect(record.suspend_VDI).not.toBe("OpaqueRef:NULL");
    expect(record.suspend_VDI).not.toBe(xapi.getObjectByRef(scratch.$ref).suspend_VDI);
    expect(xapi.getObjectByRef(record.suspend_VDI as string).type).toBe("suspend");
    expect(record.allowed_operations).not.toContain("start");
    await expect(xapi.callAsync("VM.start", copy, false, false)).rejects.toMatchObject({
      code: "VM_BAD_POWER_STATE",
      params: [copy, "halted", "suspended"],
    });
    // What works on it: resume (or a hard shutdown), as on the original.
    await xapi.callAsync("VM.resume", copy, false, false);
    await xapi.barrier();
    expect(xapi.getObjectByRef(copy)).toMatchObject({ power_state: "Running", suspend_VDI: "OpaqueRef:NULL" });
  });

  it("copies a checkpoint (a Suspended snapshot) as a Suspended VM without any pool setting", async () => {
    const xapi = await fixture.connect();
    const web = vmNamed(xapi, "web-ext4");
    const checkpoint = await xapi.callAsync<string>("VM.checkpoint", web.$ref, "cp");
    await xapi.barrier();
    expect(xapi.getObjectByRef(checkpoint)).toMatchObject({ power_state: "Suspended", is_a_snapshot: true });
    const copy = await xapi.callAsync<string>("VM.copy", checkpoint, "from-checkpoint", xapi.pool.default_SR);
    await xapi.barrier();
    expect(xapi.getObjectByRef(copy)).toMatchObject({ power_state: "Suspended", is_a_snapshot: false });
    await expect(xapi.callAsync("VM.start", copy, false, false)).rejects.toMatchObject({ code: "VM_BAD_POWER_STATE" });
    // A snapshot's copy of a Halted snapshot stays Halted and starts.
    const snapshot = await xapi.callAsync<string>("VM.snapshot", web.$ref, "plain");
    const halted = await xapi.callAsync<string>("VM.copy", snapshot, "from-snapshot", xapi.pool.default_SR);
    await xapi.call("VM.set_is_a_template", halted, false);
    await xapi.callAsync("VM.start", halted, false, false);
  });

  it("starts tasks with no allowed operations; XAPI's cancellable operations mark theirs cancellable as they start", async () => {
    const xapi = await fixture.connect();
    const { pool } = fixture.lab;
    const created = await xapi.call<string>("task.create", "mine", "");
    expect(await xapi.call("task.get_allowed_operations", created)).toEqual([]);
    // Every task record the lab writes, by task: what allowed_operations it went through while pending.
    const seen = new Map<string, string[][]>();
    const record = () => {
      for (const task of pool.store.all("task")) {
        if (task.record.status !== "pending") continue;
        const history = seen.get(task.record.name_label as string) ?? [];
        history.push(task.record.allowed_operations as string[]);
        seen.set(task.record.name_label as string, history);
      }
    };
    pool.store.on("change", record);
    try {
      const clone = await xapi.callAsync<string>("VM.clone", vmNamed(xapi, "win-fat").$ref, "c");
      await xapi.callAsync("VM.destroy", clone);
    } finally {
      pool.store.off("change", record);
    }
    expect(seen.get("Async.VM.clone")?.some((ops) => ops.includes("cancel"))).toBe(true);
    expect(seen.get("Async.VM.destroy")?.every((ops) => ops.length === 0)).toBe(true);
  });

  it("records task.cancel on a task that is not cancellable yet; the stream cancels it once it starts", async () => {
    const xapi = await fixture.connect();
    const task = await xapi.call<string>("task.create", "export", "");
    // Not cancellable: XAPI's task.cancel does not refuse (its implementation never raises the declared
    // OPERATION_NOT_ALLOWED); it records the request, and nothing happens to the task yet.
    await xapi.call("task.cancel", task);
    expect(await xapi.call("task.get_status", task)).toBe("pending");
    expect(Object.values(await xapi.call<Record<string, string>>("task.get_current_operations", task))).toEqual(["cancel"]);
    // The export's stream makes it cancellable (stream_vdi's set_cancellable) and sees the cancel at once.
    const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
    // The body is cut as soon as the stream sees the cancel (before or after the headers: the task says what happened).
    await fetch(`${fixture.lab.url}/export_raw_vdi?vdi=${vdi}&format=raw&session_id=${xapi.sessionId}&task_id=${task}`)
      .then((response) => response.arrayBuffer())
      .catch(() => undefined);
    await eventually("the export's task to end", async () => expect(await xapi.call("task.get_status", task)).toBe("cancelled"));
    expect(await xapi.call("task.get_error_info", task)).toEqual(["TASK_CANCELLED", task]);
  });

  it("cancels a running export whose stream made its task cancellable", async () => {
    const xapi = await fixture.connect();
    await xapi.call("lab.set_fault", "export_bytes_per_second", { rate: 1024 * 1024 });
    const task = await xapi.call<string>("task.create", "slow export", "");
    const vdi = diskOf(xapi, vmNamed(xapi, "win-fat"));
    const response = await fetch(`${fixture.lab.url}/export_raw_vdi?vdi=${vdi}&format=raw&session_id=${xapi.sessionId}&task_id=${task}`);
    const reader = response.body!.getReader();
    await reader.read();
    expect(await xapi.call("task.get_allowed_operations", task)).toEqual(["cancel"]);
    await xapi.call("task.cancel", task);
    // Read on: the stream sees the cancel at its next chunk and ends the body.
    for (;;) {
      const chunk = await reader.read().catch(() => ({ done: true }));
      if (chunk.done) break;
    }
    await eventually("the export's task to end", async () => expect(await xapi.call("task.get_status", task)).toBe("cancelled"));
  });
});
