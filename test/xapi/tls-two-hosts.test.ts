/**
 * Certificate pinning on a two-host pool whose hosts have their own certificates, as real pools do: transfers the master
 * redirects to the member reach it because the pinned master lists the member's certificate (`Certificate` records), and
 * a member whose certificate the pool does not list is refused, naming what it presented.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../server/log.js";
import { PoolConnection } from "../../server/xapi/pool-connection.js";
import { cancellableUpload } from "../../server/xapi/put-with-task.js";
import { CertificateRefusedError } from "../../server/xapi/tls-trust.js";
import { createLabFixture, type LabFixture } from "../lab/lab-fixture.js";
import { makeCertificate, type TestCertificate } from "../support/certificates.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";

const MEMBER = "127.0.0.3";
const SIZE = 2 * 1024 * 1024;

describe("a pinned two-host pool whose hosts have their own certificates", () => {
  let dir: string;
  let master: TestCertificate;
  let member: TestCertificate;
  let fixture: LabFixture;
  let connection: PoolConnection;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "cairn-tls-hosts-"));
    master = makeCertificate(dir, "master");
    member = makeCertificate(dir, "member");
    fixture = await createLabFixture({
      memberAddress: MEMBER,
      tls: { key: master.key, cert: master.cert },
      memberTls: { key: member.key, cert: member.cert },
    });
    const { lab } = fixture;
    connection = new PoolConnection(
      "pool-tls",
      {
        name: "tls lab",
        url: lab.url,
        username: lab.user,
        password: lab.password,
        allowUnauthorized: false,
        tlsFingerprint: master.fingerprint,
      },
      createLogger("silent"),
    );
    await connection.connectOnce();
  }, 120_000);
  afterAll(() =>
    stopAll(
      () => connection?.close(),
      () => fixture?.dispose(),
      () => rmSync(dir, { recursive: true, force: true }),
    ),
  );

  const memberDisk = async () => {
    const sr = connection.records("SR").find((record) => record.name_label === "Local storage (host 2)")!;
    return (await connection.xapi.callAsync("VDI.create", {
      name_label: "pinned upload target",
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
  };
  const bytes = (seed: number) => {
    const data = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i += 4096) data.writeUInt32BE(i ^ seed, i);
    return data;
  };
  const upload = (vdi: string, data: Buffer) =>
    cancellableUpload(connection, {
      path: "/import_raw_vdi/",
      query: { vdi, format: "raw" },
      body: Object.assign(Readable.from([data]), { length: data.length }),
      taskName: "pinned two-host upload",
      taskDescription: "",
      what: "import",
      stoppedPrefix: "stopped",
      signal: new AbortController().signal,
    });

  it("uploads to and downloads from the member, whose certificate the pinned master lists", async () => {
    expect(connection.tlsTrust.hostFingerprints).toEqual(expect.arrayContaining([master.fingerprint, member.fingerprint]));
    const vdi = await memberDisk();
    const before = fixture.lab.member!.requests.length;
    expect(await upload(vdi, bytes(7))).toBe(vdi);
    expect(fixture.lab.member!.requests.length).toBeGreaterThan(before);
    // The export is redirected too (xen-api follows the 302 through Cairn's pinned dispatcher).
    const response = await (connection.xapi as unknown as { getResource(path: string, options: unknown): Promise<unknown> }).getResource(
      "/export_raw_vdi/",
      { query: { vdi, format: "raw" } },
    );
    const chunks: Buffer[] = [];
    for await (const chunk of (response as unknown as { body: AsyncIterable<Buffer> }).body) chunks.push(Buffer.from(chunk));
    expect(Buffer.concat(chunks).equals(bytes(7))).toBe(true);
  }, 120_000);

  it("refuses a member whose certificate the pool does not list, naming what it presented", async () => {
    const pool = fixture.lab.pool;
    const listed = pool.store.all("Certificate").find((certificate) => certificate.record.fingerprint_sha256 === member.fingerprint)!;
    pool.store.destroy("Certificate", listed.ref);
    await eventually(
      "the connection to see the member's certificate gone",
      async () => {
        if (connection.tlsTrust.hostFingerprints?.includes(member.fingerprint)) throw new Error("still listed");
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const vdi = await memberDisk();
    const refusal = await upload(vdi, bytes(8)).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(CertificateRefusedError);
    expect((refusal as CertificateRefusedError).presented).toBe(member.fingerprint);
    expect((refusal as Error).message).toContain("tls lab");
  }, 120_000);
});
