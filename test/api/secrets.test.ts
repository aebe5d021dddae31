import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../server/db/prisma.js";
import path from "node:path";
import { startLab, type RunningLab } from "../../server/lab/index.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { startS3rver, type S3rverPeer } from "../remotes/s3rver-process.js";
import { expectData, expectError, openDatabase } from "./api-assertions.js";
import { settleAll, stopAll } from "../support/stop-all.js";
import { graphql } from "../support/graphql.js";

const POOL_FIELDS =
  "id name url username allowUnauthorized status lastError connectedAt hosts { uuid name address } srs { uuid name type contentType freeBytes sizeBytes } vms { uuid name powerState tags }";
const REMOTE_FIELDS =
  "id name kind location options username enabled status freeBytes usedBytes restorePointCount lastTest { ok writeBytesPerSecond readBytesPerSecond error testedAt }";
const EVERYTHING = `{ pools { ${POOL_FIELDS} } remotes { ${REMOTE_FIELDS} } vms { uuid name pool { ${POOL_FIELDS} } } srs { uuid pool { url username } } jobs { id remotes { ${REMOTE_FIELDS} } } }`;

describe("secrets: pool passwords and remote credentials", () => {
  let server: TestCairn;
  let s3: S3rverPeer;
  /** A lab pool Cairn does not hold yet: a pool address is connected once (CONFLICT the second time). */
  let spare: RunningLab;
  /** Another one, never connected: a wrong password is checked only for an address not connected already. */
  let unconnected: RunningLab;
  let db: Db;
  let admin: string;
  let poolPassword: string;
  let remoteSecret: string;
  const wrongPassword = `wrong-${randomBytes(12).toString("hex")}`;
  const unreachableSecret = `unreachable-${randomBytes(12).toString("hex")}`;
  let poolId: string;
  let remoteId: string;

  /** Every secret this file hands to the server: none may come back. */
  const secrets = () => [poolPassword, remoteSecret, wrongPassword, unreachableSecret];

  function expectNoSecret(text: string, where: string) {
    for (const secret of secrets()) expect(text.includes(secret), `${where} holds a secret`).toBe(false);
  }

  beforeAll(async () => {
    await settleAll([
      startTestCairn({ lab: true }).then((started) => (server = started)),
      startS3rver("cairn-secrets").then((started) => (s3 = started)),
    ]);
    spare = await startLab({
      dir: path.join(server.dataDir, "spare-lab"),
      port: 0,
      poolName: "spare",
      seed: "spare",
      // A password long and random enough that finding it in an answer means it leaked.
      password: `lab-${randomBytes(12).toString("hex")}`,
      diskSizeBytes: 8 * 1024 * 1024,
    });
    unconnected = await startLab({
      dir: path.join(server.dataDir, "unconnected-lab"),
      port: 0,
      poolName: "unconnected",
      seed: "unconnected",
      diskSizeBytes: 8 * 1024 * 1024,
    });
    db = openDatabase(server);
    admin = await server.login();
    const lab = spare;
    poolPassword = lab.password;
    // s3rver checks the access key id, not the signature: any secret key works with it, so this one is ours alone.
    remoteSecret = `s3-secret-${randomBytes(16).toString("hex")}`;

    const pool = await server.graphql<any>(
      `mutation($input: PoolInput!) { connectPool(input: $input) { ${POOL_FIELDS} } }`,
      { input: { name: "lab again", url: lab.url, username: lab.user, password: poolPassword } },
      admin,
    );
    expectNoSecret(JSON.stringify(pool), "the connectPool answer");
    poolId = expectData(pool).connectPool.id;

    const remote = await server.graphql<any>(
      `mutation($input: RemoteInput!) { createRemote(input: $input) { ${REMOTE_FIELDS} } }`,
      {
        input: {
          name: "s3",
          kind: "S3",
          location: `${s3.bucket}/cairn`,
          username: s3.accessKeyId,
          password: remoteSecret,
          options: { endpoint: s3.endpoint, forcePathStyle: true, region: "us-east-1" },
        },
      },
      admin,
    );
    expectNoSecret(JSON.stringify(remote), "the createRemote answer");
    remoteId = expectData(remote).createRemote.id;
  });
  afterAll(() =>
    stopAll(
      () => db?.$disconnect(),
      () => server?.stop(),
      () => s3?.stop(),
      () => spare?.stop(),
      () => unconnected?.stop(),
    ),
  );

  it("connected the second pool and the S3 remote with their secrets", async () => {
    const data = expectData(await server.graphql(graphql("{ pools { id name status } remotes { id name username } }"), {}, admin));
    expect(data.pools.find((p: any) => p.id === poolId)).toMatchObject({ name: "lab again", status: "CONNECTED" });
    expect(data.remotes.find((r: any) => r.id === remoteId)).toMatchObject({ name: "s3", username: "S3RVER" });
  });

  it("returns no secret in any field of pools, remotes, VMs, SRs or jobs", async () => {
    const job = await server.graphql(
      graphql("mutation($input: JobInput!) { createJob(input: $input) { id } }"),
      {
        input: {
          name: "to s3",
          mode: "FULL",
          selection: { smart: {} },
          remoteIds: [remoteId],
          schedules: [{ cron: "0 1 * * *", exportRetention: 1 }],
        },
      },
      admin,
    );
    expectData(job);
    const result = await server.graphql<any>(EVERYTHING, {}, admin);
    expectData(result);
    expect(result.data.pools).toHaveLength(2);
    expect(result.data.remotes.length).toBeGreaterThanOrEqual(2);
    expectNoSecret(JSON.stringify(result), "a query result");
    const single = await server.graphql<any>(`query($id: ID!) { remote(id: $id) { ${REMOTE_FIELDS} } }`, { id: remoteId }, admin);
    expectNoSecret(JSON.stringify(expectData(single)), "remote(id)");
  });

  it("has no field for a pool's or a remote's password", async () => {
    expectError(await server.graphql("{ pools { password } }", {}, admin), "GRAPHQL_VALIDATION_FAILED");
    expectError(await server.graphql("{ remotes { password } }", {}, admin), "GRAPHQL_VALIDATION_FAILED");
  });

  it("keeps the stored secret when updatePool and updateRemote leave the password out, and returns none", async () => {
    const lab = spare;
    const pool = await server.graphql<any>(
      `mutation($id: ID!, $input: PoolInput!) { updatePool(id: $id, input: $input) { ${POOL_FIELDS} } }`,
      { id: poolId, input: { name: "lab again", url: lab.url, username: lab.user } },
      admin,
    );
    expect(expectData(pool).updatePool.status).toBe("CONNECTED");
    expectNoSecret(JSON.stringify(pool), "the updatePool answer");
    const remote = await server.graphql<any>(
      `mutation($id: ID!, $input: RemoteInput!) { updateRemote(id: $id, input: $input) { ${REMOTE_FIELDS} } }`,
      {
        id: remoteId,
        input: {
          name: "s3",
          kind: "S3",
          location: `${s3.bucket}/cairn`,
          username: s3.accessKeyId,
          options: { endpoint: s3.endpoint, forcePathStyle: true, region: "us-east-1" },
        },
      },
      admin,
    );
    expectNoSecret(JSON.stringify(expectData(remote)), "the updateRemote answer");
    const tested = await server.graphql(graphql("mutation($id: ID!) { testRemote(id: $id) { ok error } }"), { id: remoteId }, admin);
    expect(expectData(tested).testRemote).toEqual({ ok: true, error: null });
  });

  it("stores the pool password and the remote secret sealed (v1:...), never in plain", async () => {
    const pool = await db.pool.findUniqueOrThrow({ where: { id: poolId } });
    expect(pool.passwordSealed).toMatch(/^v1:[A-Za-z0-9+/=]+$/);
    const remote = await db.remote.findUniqueOrThrow({ where: { id: remoteId } });
    expect(remote.passwordSealed).toMatch(/^v1:[A-Za-z0-9+/=]+$/);
    const allRows = JSON.stringify(
      [await db.pool.findMany(), await db.remote.findMany(), await db.job.findMany(), await db.run.findMany()],
      (_k, v) => (typeof v === "bigint" ? String(v) : v),
    );
    expectNoSecret(allRows, "the database");
    expect(allRows).not.toContain(Buffer.from(remoteSecret).toString("base64"));
  });

  it("refuses a wrong pool password without echoing it in the answer", async () => {
    const lab = unconnected;
    const result = await server.graphql(
      "mutation($input: PoolInput!) { connectPool(input: $input) { id } }",
      { input: { name: "wrong password", url: lab.url, username: lab.user, password: wrongPassword } },
      admin,
    );
    expectError(result, "BAD_USER_INPUT", "input.password");
    expectNoSecret(JSON.stringify(result), "the refused connectPool answer");
    expect(await db.pool.count({ where: { name: "wrong password" } })).toBe(0);
  });

  it("refuses an unreachable S3 remote without echoing its secret in the answer", async () => {
    const result = await server.graphql(
      "mutation($input: RemoteInput!) { createRemote(input: $input) { id } }",
      {
        input: {
          name: "s3 unreachable",
          kind: "S3",
          location: "nowhere",
          username: "AKIA",
          password: unreachableSecret,
          options: { endpoint: "http://127.0.0.1:9", maxAttempts: 1, connectionTimeoutMs: 500 },
        },
      },
      admin,
    );
    expectError(result, "UNAVAILABLE");
    expectNoSecret(JSON.stringify(result), "the refused createRemote answer");
    expect(await db.remote.count({ where: { name: "s3 unreachable" } })).toBe(0);
  });

  it("writes no secret into any log line, also after the refused connections", async () => {
    // The refused attempts above may not have run yet when this test runs alone: make sure they happened.
    const lab = unconnected;
    await server.graphql(
      "mutation($input: PoolInput!) { connectPool(input: $input) { id } }",
      { input: { name: "wrong again", url: lab.url, username: lab.user, password: wrongPassword } },
      admin,
    );
    await server.graphql(
      "mutation($input: PoolInput!) { connectPool(input: $input) { id } }",
      { input: { name: "closed port", url: "http://127.0.0.1:9", username: lab.user, password: wrongPassword } },
      admin,
    );
    // A refused sign-in is logged (with the user name): its password must not be.
    expectError(
      await server.graphql('mutation($p: String!) { login(username: "admin", password: $p) { token } }', { p: wrongPassword }),
      "UNAUTHENTICATED",
    );
    expect(server.logs.some((line) => line.includes("sign-in refused"))).toBe(true);
    server.logs.forEach((line, i) => expectNoSecret(line, `log line ${i}: ${line.slice(0, 200)}`));
  });
});
