/**
 * The lab held to XAPI's datamodel (server/lab/datamodel-fields.json, extracted from xapi-project/xen-api by
 * scripts/extract-datamodel.ts): every record of every class has exactly the datamodel's fields with values of the wire
 * type, every method takes the datamodel's parameters, and allowed_operations follow the state as XAPI computes them.
 * The checks here read the JSON themselves: they share no code with the lab's own type handling.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMethodTable } from "../../server/lab/lab-pool.js";
import { createLabFixture, type LabFixture } from "./lab-fixture.js";

interface Datamodel {
  source: { commit: string; describe: string };
  exposed: string[];
  eventFromRecord: Record<string, string>;
  classes: Record<
    string,
    {
      fields: Record<string, string>;
      writable: string[];
      constructor: boolean;
      messages: Record<string, { params: string[]; defaulted: number }>;
    }
  >;
  enums: Record<string, string[]>;
  errors: Record<string, string[] | null>;
}

const datamodel = JSON.parse(readFileSync(join(import.meta.dirname, "../../server/lab/datamodel-fields.json"), "utf8")) as Datamodel;

const DATETIME = /^\d{8}T\d{2}:\d{2}:\d{2}Z$/;
const REF = /^OpaqueRef:(NULL|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** What is wrong with `value` as a JSON-RPC value of the datamodel type `type` (undefined: nothing). */
function typeProblem(type: string, value: unknown, refs: (ref: string, cls: string) => boolean): string | undefined {
  if (type.endsWith(" set")) {
    if (!Array.isArray(value)) return `expected an array for ${type}`;
    for (const item of value) {
      const problem = typeProblem(type.slice(0, -4), item, refs);
      if (problem !== undefined) return `in ${type}: ${problem}`;
    }
    return undefined;
  }
  const map = /^\((.+) -> (.+)\) map$/.exec(type);
  if (map !== null) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return `expected an object for ${type}`;
    for (const [key, item] of Object.entries(value)) {
      const keyProblem = map[1] === "string" ? undefined : typeProblem(map[1], map[1] === "int" ? Number(key) : key, refs);
      const problem = keyProblem ?? typeProblem(map[2], item, refs);
      if (problem !== undefined) return `in ${type} at ${key}: ${problem}`;
    }
    return undefined;
  }
  if (type.endsWith(" ref")) {
    if (typeof value !== "string" || !REF.test(value)) return `expected a ref for ${type}, got ${JSON.stringify(value)}`;
    const cls = type.slice(0, -4);
    if (value !== "OpaqueRef:NULL" && !refs(value, cls)) return `dangling ${type} ${value}`;
    return undefined;
  }
  if (type.startsWith("enum ")) {
    const values = datamodel.enums[type.slice(5)];
    return typeof value === "string" && values.includes(value) ? undefined : `${JSON.stringify(value)} is not one of ${type}`;
  }
  switch (type) {
    case "string":
      return typeof value === "string" ? undefined : `expected a string, got ${JSON.stringify(value)}`;
    case "int":
      return Number.isInteger(value) ? undefined : `expected an int, got ${JSON.stringify(value)}`;
    case "float":
      return typeof value === "number" ? undefined : `expected a float, got ${JSON.stringify(value)}`;
    case "bool":
      return typeof value === "boolean" ? undefined : `expected a bool, got ${JSON.stringify(value)}`;
    case "datetime":
      return typeof value === "string" && DATETIME.test(value) ? undefined : `expected a datetime, got ${JSON.stringify(value)}`;
    default:
      return `unknown type ${type}`;
  }
}

async function rpc(url: string, method: string, params: unknown[]): Promise<any> {
  const response = await fetch(`${url}/jsonrpc`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", method, params, id: 1 }),
  });
  const body = (await response.json()) as { result?: unknown; error?: { message: string; data: unknown[] } };
  if (body.error !== undefined) throw Object.assign(new Error(body.error.message), { code: body.error.message, params: body.error.data });
  return body.result;
}

/** Every record of every listed class, each checked against the datamodel: how many, by class, and what is wrong. */
async function checkRecords(url: string, session: string): Promise<{ records: number; checked: Map<string, number>; problems: string[] }> {
  const listed = (await rpc(url, "system.listMethods", [])) as string[];
  const classes = listed.filter((name) => name.endsWith(".get_all_records")).map((name) => name.slice(0, name.indexOf(".")));
  const problems: string[] = [];
  if (JSON.stringify([...classes].sort()) !== JSON.stringify([...datamodel.exposed].sort()))
    problems.push(`listed classes: ${classes.join(", ")}`);
  const all = new Map<string, string>();
  const records: Array<[string, string, Record<string, unknown>]> = [];
  for (const cls of classes) {
    for (const [ref, record] of Object.entries(
      (await rpc(url, `${cls}.get_all_records`, [session])) as Record<string, Record<string, unknown>>,
    )) {
      all.set(ref, cls);
      records.push([cls, ref, record]);
    }
  }
  const exists = (ref: string, cls: string) => !datamodel.exposed.includes(cls) || all.get(ref) === cls;
  const checked = new Map<string, number>();
  for (const [cls, ref, record] of records) {
    const fields = datamodel.classes[cls].fields;
    const keys = Object.keys(record).sort();
    if (JSON.stringify(keys) !== JSON.stringify(Object.keys(fields).sort())) problems.push(`${cls} ${ref}: fields ${keys.join(", ")}`);
    for (const [field, type] of Object.entries(fields)) {
      const problem = typeProblem(type, record[field], exists);
      if (problem !== undefined) problems.push(`${cls}.${field} of ${ref}: ${problem}`);
    }
    checked.set(cls, (checked.get(cls) ?? 0) + 1);
  }
  return { records: records.length, checked, problems };
}

describe("the lab's records and methods are XAPI's datamodel (xen-api e2ee48d6883e)", () => {
  let fixture: LabFixture;
  let session: string;
  let url: string;
  const call = (method: string, ...params: unknown[]) => rpc(url, method, [session, ...params]);
  const waitTask = async (task: string): Promise<any> => {
    for (;;) {
      const record = await call("task.get_record", task);
      if (record.status !== "pending") return record;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const asyncCall = async (method: string, ...params: unknown[]) => {
    const task = await call(`Async.${method}`, ...params);
    const record = await waitTask(task);
    if (record.status !== "success")
      throw Object.assign(new Error(record.error_info[0]), { code: record.error_info[0], params: record.error_info.slice(1) });
    return String(record.result).replace(/^<value>(.*)<\/value>$/, "$1");
  };
  const vmByName = async (name: string): Promise<string> => (await call("VM.get_by_name_label", name))[0];
  const diskOfVm = async (vm: string): Promise<string> => {
    for (const vbd of (await call("VM.get_VBDs", vm)) as string[]) {
      const record = await call("VBD.get_record", vbd);
      if (record.type === "Disk") return record.VDI;
    }
    throw new Error(`no disk on ${vm}`);
  };

  beforeAll(async () => {
    fixture = await createLabFixture();
    url = fixture.lab.url;
    session = await rpc(url, "session.login_with_password", [fixture.lab.user, fixture.lab.password]);
    // Records that operations make, besides the seeded ones: a snapshot, a clone, a checkpoint, a copy of a Suspended VM.
    const web = await vmByName("web-ext4");
    await asyncCall("VM.snapshot", web, "dm-snapshot");
    await asyncCall("VM.checkpoint", web, "dm-checkpoint");
    await asyncCall("VM.clone", await vmByName("win-fat"), "dm-clone");
  }, 120_000);
  afterAll(async () => {
    await fixture?.dispose();
  });

  it("names its source: the extracted JSON is of the release the README names", () => {
    expect(datamodel.source.commit.startsWith("e2ee48d6883e")).toBe(true);
    expect(datamodel.source.describe).toContain("v26.17.0-29");
  });

  it("serves every class a real pool lists, each record with exactly the datamodel's fields and wire types", async () => {
    const { records, checked, problems } = await checkRecords(url, session);
    expect(problems).toEqual([]);
    // Every class Cairn touches has records (the metrics classes too: VM.metrics, VM.guest_metrics, host.metrics, host.PIFs).
    for (const cls of [
      "pool",
      "host",
      "SR",
      "PBD",
      "VDI",
      "VBD",
      "VM",
      "VIF",
      "network",
      "VM_metrics",
      "VM_guest_metrics",
      "host_metrics",
      "PIF",
      "SM",
    ]) {
      expect(checked.get(cls) ?? 0, cls).toBeGreaterThan(0);
    }
    console.log(
      `datamodel check: ${records} records of ${checked.size} classes, ${[...checked.keys()].reduce((n, cls) => n + Object.keys(datamodel.classes[cls].fields).length, 0)} fields`,
    );
  });

  it("holds a two-host pool to the same field lists (the member's host, SR, VMs, metrics and PIFs)", async () => {
    const twoHosts = await createLabFixture({ memberAddress: "127.0.0.2" });
    try {
      const memberSession = await rpc(twoHosts.lab.url, "session.login_with_password", [twoHosts.lab.user, twoHosts.lab.password]);
      const { checked, problems } = await checkRecords(twoHosts.lab.url, memberSession);
      expect(problems).toEqual([]);
      expect(checked.get("host")).toBe(2);
      expect(checked.get("host_metrics")).toBe(2);
    } finally {
      await twoHosts.dispose();
    }
  });

  it("links every VM to its metrics and running guests to guest metrics, and the host to its metrics and PIFs", async () => {
    const vms = (await call("VM.get_all_records")) as Record<string, any>;
    for (const [ref, vm] of Object.entries(vms)) {
      expect(vm.metrics, ref).not.toBe("OpaqueRef:NULL");
      if (vm.power_state === "Running" && !vm.is_control_domain) expect(vm.guest_metrics, vm.name_label).not.toBe("OpaqueRef:NULL");
      if (vm.power_state === "Halted") expect(vm.guest_metrics, vm.name_label).toBe("OpaqueRef:NULL");
      if (vm.power_state === "Suspended") expect(vm.suspend_VDI, vm.name_label).not.toBe("OpaqueRef:NULL");
    }
    const host = (await call("host.get_record", (await call("host.get_all"))[0])) as any;
    expect(host.metrics).not.toBe("OpaqueRef:NULL");
    expect(host.PIFs.length).toBeGreaterThan(0);
    const session_ = await call("session.get_record", session);
    expect(Object.keys(session_).sort()).toEqual(Object.keys(datamodel.classes.session.fields).sort());
    expect(session_.this_host).toBe((await call("host.get_all"))[0]);
  });

  it("sends event.from records as event_types.ml defines them", async () => {
    const vm = await asyncCall("VM.clone", await vmByName("win-fat"), "dm-event");
    const token = await call("event.inject", "pool", (await call("pool.get_all"))[0]);
    const before = (await call("event.from", ["*"], "", 0)) as any;
    expect(Object.keys(before).sort()).toEqual(["events", "token", "valid_ref_counts"]);
    await call("VM.add_tags", await vmByName("win-fat"), "dm-event");
    await asyncCall("VM.destroy", vm);
    const result = (await call("event.from", ["vm"], token, 0)) as any;
    const operations = new Set<string>();
    for (const event of result.events) {
      const expected = Object.keys(datamodel.eventFromRecord).filter((key) => key !== "snapshot" || event.operation !== "del");
      expect(Object.keys(event).sort()).toEqual(expected.sort());
      expect(typeof event.id).toBe("string");
      expect(typeof event.timestamp).toBe("string");
      expect(datamodel.enums.event_operation).toContain(event.operation);
      operations.add(event.operation);
    }
    expect([...operations]).toEqual(expect.arrayContaining(["mod", "del"]));
  });

  it("takes every method with the datamodel's parameters and defaults, and only methods a real pool has", () => {
    const table = createMethodTable();
    const problems: string[] = [];
    let explicit = 0;
    let implicit = 0;
    for (const [name, method] of table) {
      const [cls, message] = [name.slice(0, name.indexOf(".")), name.slice(name.indexOf(".") + 1)];
      if (cls === "lab") continue;
      const info = datamodel.classes[cls];
      if (info === undefined) {
        problems.push(`${name}: no such class`);
        continue;
      }
      const declared = info.messages[name];
      const field = (prefix: string) => (message.startsWith(prefix) ? message.slice(prefix.length) : undefined);
      const type = (f: string | undefined) => (f === undefined ? undefined : info.fields[f]);
      let expected: { params: string[]; defaulted: number; async?: boolean } | undefined = declared;
      if (expected !== undefined) explicit++;
      else {
        implicit++;
        const rw = (f: string | undefined) => f !== undefined && info.writable.includes(f);
        if (["get_all_records", "get_all"].includes(message)) expected = { params: [], defaulted: 0 };
        else if (message === "get_record") expected = { params: ["self"], defaulted: 0 };
        else if (message === "get_by_uuid") expected = { params: ["uuid"], defaulted: 0 };
        else if (message === "get_by_name_label" && "name_label" in info.fields) expected = { params: ["label"], defaulted: 0 };
        else if (message === "create" && info.constructor) expected = { params: ["args"], defaulted: 0 };
        else if (message === "destroy" && info.constructor) expected = { params: ["self"], defaulted: 0 };
        else if (type(field("get_")) !== undefined) expected = { params: ["self"], defaulted: 0 };
        else if (rw(field("set_"))) expected = { params: ["self", "value"], defaulted: 0 };
        else if (rw(field("add_to_")) && type(field("add_to_"))?.endsWith(" map"))
          expected = { params: ["self", "key", "value"], defaulted: 0 };
        else if (rw(field("remove_from_")) && type(field("remove_from_"))?.endsWith(" map"))
          expected = { params: ["self", "key"], defaulted: 0 };
        else if (rw(field("add_")) && type(field("add_"))?.endsWith(" set")) expected = { params: ["self", "value"], defaulted: 0 };
        else if (rw(field("remove_")) && type(field("remove_"))?.endsWith(" set")) expected = { params: ["self", "value"], defaulted: 0 };
      }
      if (expected === undefined) {
        problems.push(`${name}: not a message of XAPI`);
        continue;
      }
      // Implicit messages: only the constructor and destructor have an Async. form (datamodel_utils.ml msg_async).
      const async = expected.async ?? (message === "create" || message === "destroy");
      if ((method.async === true) !== async)
        problems.push(`${name}: Async.${name} ${method.async === true ? "served" : "missing"}, XAPI ${async ? "has" : "has not"} it`);
      if (method.params.length !== expected.params.length || (method.optional ?? 0) !== expected.defaulted) {
        problems.push(
          `${name}: lab (${method.params.join(", ")}; ${method.optional ?? 0} defaulted), XAPI (${expected.params.join(", ")}; ${expected.defaulted} defaulted)`,
        );
      }
    }
    expect(problems).toEqual([]);
    console.log(`method check: ${explicit} explicit and ${implicit} implicit methods held to the datamodel`);
  });

  it("publishes allowed_operations by power state, as xapi_vm_lifecycle.ml computes them", async () => {
    const ops = async (name: string) => (await call("VM.get_allowed_operations", await vmByName(name))) as string[];
    const running = await ops("web-ext4");
    expect(running).toEqual(
      expect.arrayContaining([
        "clean_shutdown",
        "hard_shutdown",
        "snapshot",
        "checkpoint",
        "suspend",
        "pause",
        "clean_reboot",
        "hard_reboot",
      ]),
    );
    expect(running).not.toEqual(expect.arrayContaining(["start"]));
    for (const op of ["start", "export", "destroy", "copy", "clone", "resume", "unpause", "snapshot_with_quiesce"])
      expect(running).not.toContain(op);
    const halted = await ops("win-fat");
    expect(halted).toEqual(expect.arrayContaining(["start", "export", "copy", "clone", "destroy", "snapshot"]));
    for (const op of ["clean_shutdown", "hard_shutdown", "suspend", "resume", "pause", "unpause", "checkpoint"])
      expect(halted).not.toContain(op);
    const paused = await ops("db-data");
    expect(paused).toEqual(expect.arrayContaining(["unpause", "hard_shutdown", "hard_reboot", "checkpoint", "snapshot"]));
    for (const op of ["start", "resume", "pause", "clean_shutdown"]) expect(paused).not.toContain(op);
    const suspended = await ops("scratch");
    expect(suspended).toEqual(expect.arrayContaining(["resume", "hard_shutdown", "checkpoint", "export", "destroy", "snapshot"]));
    for (const op of ["start", "pause", "unpause", "clean_shutdown", "copy", "clone"]) expect(suspended).not.toContain(op);
    const snapshot = await ops("dm-snapshot");
    expect([...snapshot].sort()).toEqual(["clone", "copy", "destroy", "export", "metadata_export", "revert"]);
    const template = await ops("Debian Bookworm 12");
    expect(template).toEqual(expect.arrayContaining(["clone", "copy", "export", "provision"]));
    for (const op of ["start", "destroy", "snapshot"]) expect(template).not.toContain(op);
  });

  it("follows the state: a halted VM's list changes when it starts, a VDI's when its VM runs", async () => {
    const vm = await vmByName("dm-clone");
    const disk = await diskOfVm(vm);
    expect(await call("VDI.get_allowed_operations", disk)).toEqual(
      expect.arrayContaining(["clone", "copy", "resize", "snapshot", "destroy", "forget", "update", "generate_config"]),
    );
    await asyncCall("VM.start", vm, false, false);
    const until = async (check: () => Promise<boolean>) => {
      for (let i = 0; i < 500 && !(await check()); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    };
    await until(async () => ((await call("VM.get_allowed_operations", vm)) as string[]).includes("clean_shutdown"));
    expect(await call("VM.get_allowed_operations", vm)).not.toContain("start");
    // Attached read-write: only what XAPI does live (xapi_vdi.ml operation_can_be_performed_live; ext has no resize_online).
    await until(async () => !((await call("VDI.get_allowed_operations", disk)) as string[]).includes("destroy"));
    expect([...((await call("VDI.get_allowed_operations", disk)) as string[])].sort()).toEqual(["clone", "snapshot"]);
    await asyncCall("VM.hard_shutdown", vm);
    await until(async () => ((await call("VM.get_allowed_operations", vm)) as string[]).includes("start"));
    expect(await call("VM.get_allowed_operations", vm)).toContain("start");
    const srs = (await call("SR.get_all_records")) as Record<string, any>;
    const local = Object.values(srs).find((sr) => sr.name_label === "Local storage");
    expect(local.allowed_operations).toEqual(
      expect.arrayContaining(["scan", "vdi_create", "vdi_destroy", "vdi_snapshot", "vdi_clone", "vdi_resize"]),
    );
    for (const op of ["destroy", "forget", "vdi_introduce"]) expect(local.allowed_operations).not.toContain(op);
  });
});

/** The arguments of a literal array `[a, b(c, d), "e,f"]` starting at `text[start]`: how many, at the top level. */
function literalArity(text: string, start: number): number | undefined {
  if (text[start] !== "[") return undefined;
  let depth = 0;
  let count = 0;
  let inItem = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (depth === 1 && !inItem && !/[\s,\]]/.test(c)) {
      inItem = true;
      count++;
    }
    if (c === '"' || c === "'" || c === "`") {
      i = text.indexOf(c, i + 1);
      continue;
    }
    if ("([{".includes(c)) depth++;
    else if (")]}".includes(c)) {
      depth--;
      if (depth === 0) return count;
    } else if (c === "," && depth === 1) inItem = false;
  }
  return undefined;
}

describe("the lab's errors are XAPI's (api_errors.ml, datamodel_errors.ml)", () => {
  // Where XAPI's raise site gives other parameters than datamodel_errors.ml declares, the lab follows the raise site.
  const RAISE_SITE: Record<string, string> = {
    VM_IS_TEMPLATE: "xapi_vm_lifecycle.ml check_template raises [vm; operation]",
    VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED: "xapi_vm_lifecycle.ml check_operation_error raises [vm]",
    VM_IS_SNAPSHOT: "xapi_vm_lifecycle.ml check_snapshot raises [vm; operation]",
    SESSION_AUTHENTICATION_FAILED: "xapi_session.ml raises [user; message]",
    VDI_IO_ERROR: "the lab's disk errors carry their message, as SM's do",
  };

  it("raises only error names XAPI has, with the declared number of parameters", () => {
    const dir = join(import.meta.dirname, "../../server/lab");
    const problems: string[] = [];
    let checked = 0;
    for (const file of readdirSync(dir).filter((name) => name.endsWith(".ts"))) {
      const text = readFileSync(join(dir, file), "utf8");
      for (const match of text.matchAll(/XapiFailure\("([A-Z][A-Z0-9_]+)",\s*|\["([A-Z][A-Z0-9_]+)",\s*(?=\[)/g)) {
        const code = match[1] ?? match[2];
        if (code.startsWith("SR_BACKEND_FAILURE_")) continue; // SM's own errors, numbered
        if (!(code in datamodel.errors)) {
          problems.push(`${file}: ${code} is not an error of XAPI`);
          continue;
        }
        checked++;
        const declared = datamodel.errors[code];
        const arity = literalArity(text, (match.index ?? 0) + match[0].length);
        if (declared === null || arity === undefined || RAISE_SITE[code] !== undefined) continue;
        if (arity !== declared.length) problems.push(`${file}: ${code} with ${arity} parameters, XAPI declares [${declared.join("; ")}]`);
      }
    }
    expect(problems).toEqual([]);
    console.log(`error check: ${checked} raise sites`);
  });
});
