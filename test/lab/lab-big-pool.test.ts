/**
 * Issue 13, behaviour 7: Cairn's pool connection (server/xapi/pool-connection.ts, the one PoolRegistry makes) connects
 * to a big pool, every class a real pool lists, hundreds of VMs and thousands of messages, within its 20 s connect
 * budget. How long it takes is measured and printed, not asserted (a busy 2-core machine is no benchmark).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATAMODEL } from "../../server/lab/class-defaults.js";
import { fillBigPool } from "../../server/lab/datamodel-big-pool.js";
import { createLogger } from "../../server/log.js";
import { PoolConnection } from "../../server/xapi/pool-connection.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import { createLabFixture, type LabFixture } from "./lab-fixture.js";

const VMS = 300;
const MESSAGES = 5000;

describe("a big pool (every listed class, 300 VMs, 5000 messages)", () => {
  let fixture: LabFixture | undefined;
  let connection: PoolConnection | undefined;
  beforeAll(async () => {
    fixture = await createLabFixture();
    const started = performance.now();
    await fillBigPool(fixture.lab.pool, { vms: VMS, messages: MESSAGES });
    const { store } = fixture.lab.pool;
    const objects = DATAMODEL.exposed.reduce((n, cls) => n + store.count(cls), 0);
    const classes = DATAMODEL.exposed.filter((cls) => store.count(cls) > 0).length;
    console.log(`big pool: ${objects} objects of ${classes} classes filled in ${Math.round(performance.now() - started)} ms`);
  }, 120_000);
  afterAll(() =>
    stopAll(
      () => connection?.close(),
      () => fixture?.dispose(),
    ),
  );

  it("holds objects of every class a real pool lists", () => {
    const { store } = fixture!.lab.pool;
    const empty = DATAMODEL.exposed.filter((cls) => store.count(cls) === 0 && cls !== "task");
    expect(empty).toEqual([]);
    expect(store.count("message")).toBe(MESSAGES);
  });

  it("is connected by Cairn's pool connection within its connect budget, with every VM listed", async () => {
    const { lab } = fixture!;
    connection = new PoolConnection(
      "big-pool",
      { name: "big", url: lab.url, username: lab.user, password: lab.password, allowUnauthorized: true },
      createLogger("warn", { write: () => undefined }),
    );
    const started = performance.now();
    // connectOnce fails past CONNECT_TIMEOUT_MS (20 s): resolving is the proof that the budget was kept.
    await connection.connectOnce();
    const connectMs = Math.round(performance.now() - started);
    expect(connection.status).toBe("CONNECTED");
    const vms = connection.records("VM").filter((vm) => !vm.is_a_snapshot && !vm.is_a_template && !vm.is_control_domain);
    expect(vms.length).toBeGreaterThanOrEqual(VMS);
    const messages = connection.records("message").length;
    console.log(
      `big pool: Cairn's pool connection connected in ${connectMs} ms (budget 20000 ms), ${vms.length} VMs, ${messages} messages in its cache`,
    );
    // Still CONNECTED while events flow: a change is seen.
    const vm = vms[0];
    await connection.xapi.call("VM.add_tags", vm.$ref, "seen");
    await eventually("the tag to reach the cache", () =>
      expect(connection!.records("VM").find((r) => r.$ref === vm.$ref)?.tags).toContain("seen"),
    );
  });
});
