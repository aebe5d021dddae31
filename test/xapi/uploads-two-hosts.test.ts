/**
 * Cairn's own uploads (put-with-task.ts) on a two-host pool: a disk on the member's local SR is sent where XAPI's 302
 * says (a probe first, as xen-api's putResource does, so the body goes to one host only and the task never waits for a
 * body that went elsewhere), and a connection given a member's URL (HOST_IS_SLAVE) uploads to the master.
 */
import { Readable } from "node:stream";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../server/log.js";
import { PoolConnection } from "../../server/xapi/pool-connection.js";
import { cancellableUpload } from "../../server/xapi/put-with-task.js";
import { createLabFixture, type LabFixture } from "../lab/lab-fixture.js";
import { stopAll } from "../support/stop-all.js";

const MEMBER = "127.0.0.2";
const SIZE = 2 * 1024 * 1024 + 4096;

describe("uploads on a two-host pool", () => {
  let fixture: LabFixture;
  const connections: PoolConnection[] = [];

  beforeAll(async () => {
    fixture = await createLabFixture({ memberAddress: MEMBER });
  });
  afterAll(() => stopAll(...connections.map((connection) => () => connection.close()), () => fixture?.dispose()));

  async function connect(url: string): Promise<PoolConnection> {
    const { lab } = fixture;
    const connection = new PoolConnection(
      "pool-1",
      { name: "lab", url, username: lab.user, password: lab.password, allowUnauthorized: true },
      createLogger("silent"),
    );
    connections.push(connection);
    await connection.connectOnce();
    return connection;
  }

  async function newDisk(connection: PoolConnection, srName: string): Promise<string> {
    const sr = connection.records("SR").find((record) => record.name_label === srName)!;
    return (await connection.xapi.callAsync("VDI.create", {
      name_label: `upload target on ${srName}`,
      SR: sr.$ref,
      virtual_size: SIZE,
      type: "user",
      sharable: false,
      read_only: false,
      other_config: {},
      xenstore_data: {},
      sm_config: {},
      tags: [],
    })) as string;
  }

  function body(seed: number): Readable & { length: number } {
    const bytes = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i += 4096) bytes.writeUInt32BE(i ^ seed, i);
    return Object.assign(Readable.from([bytes]), { length: SIZE });
  }

  const upload = (connection: PoolConnection, vdi: string, seed: number) =>
    cancellableUpload(connection, {
      path: "/import_raw_vdi/",
      query: { vdi, format: "raw" },
      body: body(seed),
      taskName: "two-host upload test",
      taskDescription: "",
      what: "import",
      stoppedPrefix: "stopped",
      signal: new AbortController().signal,
    });

  it("the master answers an upload of the member's SR with 302 and leaves its task pending (what a PUT that ignores it would wait on forever)", async () => {
    const connection = await connect(fixture.lab.url);
    const vdi = await newDisk(connection, "Local storage (host 2)");
    const xapi = connection.xapi as unknown as {
      sessionId: string;
      createTask(name: string): Promise<string>;
      getObjectByRef(ref: string): any;
    };
    const task = await xapi.createTask("plain PUT");
    const query = new URLSearchParams({ session_id: xapi.sessionId, task_id: task, vdi, format: "raw" });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${fixture.lab.url}/import_raw_vdi/?${query}`, { method: "PUT", headers: { "content-length": SIZE } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on("error", reject);
      req.write(Buffer.alloc(64 * 1024)); // the start of a body that never reaches the member
    });
    expect(status).toBe(302);
    expect(String((await connection.xapi.call("task.get_status", task)) as string)).toBe("pending");
  });

  it("sends a disk of the member's SR to the member (probe, 302, then the body once) and the task completes", async () => {
    const connection = await connect(fixture.lab.url);
    const vdi = await newDisk(connection, "Local storage (host 2)");
    const before = fixture.lab.member!.requests.length;
    expect(await upload(connection, vdi, 1)).toBe(vdi);
    expect(fixture.lab.member!.requests.slice(before)).toEqual(["PUT /import_raw_vdi/", "PUT /import_raw_vdi/"]); // its probe, then the body
    const written = Buffer.from(String(await connection.xapi.call("lab.read_vdi", vdi, 0, SIZE)), "base64");
    expect(written.equals(await readBody(body(1)))).toBe(true);
  });

  it("given a member's URL, connects to the master (HOST_IS_SLAVE) and uploads there, not to the configured host", async () => {
    const connection = await connect(fixture.lab.member!.url);
    expect(connection.baseUrl).toBe(fixture.lab.url);
    const vdi = await newDisk(connection, "Local storage");
    const before = fixture.lab.member!.requests.length;
    expect(await upload(connection, vdi, 2)).toBe(vdi);
    expect(fixture.lab.member!.requests.slice(before)).toEqual([]);
  });
});

async function readBody(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
