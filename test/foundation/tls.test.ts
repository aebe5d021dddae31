/**
 * TLS of Cairn's own: with TLS_CERT and TLS_KEY the API, graphql-ws (wss) and the dashboard are served over HTTPS with that
 * certificate (a client trusting it as its CA gets answers; one that does not is refused); with TLS=on and no certificate a
 * self-signed one is made in DATA_DIR/tls, kept across restarts, and the fingerprint `npm start` prints is the one the server
 * presents and the one openssl computes from the file; a key that is not the certificate's, or a file that cannot be read, stops
 * the start with a message naming the variable.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "graphql-ws";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { loadConfig } from "../../server/config.js";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { selfSignedCertificate } from "../../server/security/tls-certificate.js";
import { makeCertificate, type TestCertificate } from "../support/certificates.js";
import { ADMIN_PASSWORD, startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { eventually } from "../support/eventually.js";
import { stopAll } from "../support/stop-all.js";
import * as queue from "../support/subscription-queue.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** A GraphQL call over HTTPS trusting `ca` only (undici's fetch: node's global one takes no CA). */
async function httpsGraphql(url: string, ca: string, query: string, token?: string): Promise<{ status: number; body: any }> {
  const dispatcher = new Agent({ connect: { ca } });
  try {
    const response = await undiciFetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query }),
      dispatcher,
    });
    return { status: response.status, body: await response.json() };
  } finally {
    await dispatcher.close();
  }
}

async function httpsGet(url: string, ca: string): Promise<{ status: number; type: string | null; text: string }> {
  const dispatcher = new Agent({ connect: { ca } });
  try {
    const response = await undiciFetch(url, { dispatcher });
    return { status: response.status, type: response.headers.get("content-type"), text: await response.text() };
  } finally {
    await dispatcher.close();
  }
}

/** The SHA-256 fingerprint of the certificate the server at `url` presents (no verification: this reads, it does not trust). */
function presentedFingerprint(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once("error", reject);
  });
}

function opensslFingerprint(certFile: string): string {
  const printed = execFileSync("openssl", ["x509", "-in", certFile, "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" });
  return printed.trim().split("=")[1];
}

describe("TLS with TLS_CERT and TLS_KEY", () => {
  let dir: string;
  let certificate: TestCertificate;
  let server: TestCairn;
  let token: string;
  let db: Db;
  const clients: Client[] = [];

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-tls-"));
    certificate = makeCertificate(dir, "cairn-test");
    server = await startTestCairn({ env: { TLS_CERT: path.join(dir, "cairn-test.crt"), TLS_KEY: path.join(dir, "cairn-test.key") } });
    db = createPrismaClient(server.database.url);
    const login = await httpsGraphql(
      server.url,
      certificate.cert,
      `mutation { login(username: "admin", password: "${ADMIN_PASSWORD}") { token } }`,
    );
    token = login.body.data.login.token;
  });
  afterAll(() =>
    stopAll(
      () => Promise.all(clients.map((client) => client.dispose())),
      () => db?.$disconnect(),
      () => server?.stop(),
      () => fs.rm(dir, { recursive: true, force: true }),
    ),
  );

  it("answers GraphQL over HTTPS to a client that trusts the certificate, and nothing to one that does not", async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(server.cairn.tls).toMatchObject({ fingerprint: certificate.fingerprint, selfSigned: false });
    const answer = await httpsGraphql(server.url, certificate.cert, "{ me { username } }", token);
    expect(answer).toEqual({ status: 200, body: { data: { me: { username: "admin" } } } });

    // Node's default trust store does not hold the test CA: the TLS handshake itself fails.
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    // Plain HTTP on the HTTPS port gets no API answer.
    const plain = await fetch(`${server.url.replace("https:", "http:")}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ me { username } }" }),
    }).then(
      (response) => response.status,
      () => "refused",
    );
    expect(plain === "refused" || plain === 400).toBe(true);
  });

  it("serves the dashboard and /healthz over HTTPS with the security headers", async () => {
    const health = await httpsGet(`${server.url}/healthz`, certificate.cert);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.text)).toEqual({ status: "ok" });
    const page = await httpsGet(`${server.url}/`, certificate.cert);
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/text\/html/);
  });

  it("delivers a subscription over wss://", async () => {
    class TrustingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { ca: certificate.cert });
      }
    }
    const client = createClient({
      url: `${server.url.replace(/^https/, "wss")}/graphql`,
      webSocketImpl: TrustingWebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const job = await db.job.create({
      data: { name: `job-${randomUUID()}`, mode: "FULL", selection: { vmUuids: [] }, srUuids: [], settings: {} },
    });
    const run = await db.run.create({ data: { jobId: job.id, trigger: "MANUAL", status: "PENDING" } });
    const updates = queue.subscribe<{ id: string; status: string }>(
      client,
      "subscription($jobId: ID) { runUpdated(jobId: $jobId) { id status } }",
      { jobId: job.id },
      20_000,
    );
    const first = await queue.untilActive(
      updates,
      () => server.cairn.services.events.publish({ type: "run", runId: run.id, jobId: job.id }),
      20_000,
    );
    expect(first).toEqual({ id: run.id, status: "PENDING" });
  });
});

describe("TLS start errors", () => {
  let dir: string;
  let database: TestDatabase;
  let a: TestCertificate;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-tls-errors-"));
    a = makeCertificate(dir, "a");
    makeCertificate(dir, "b");
    await fs.writeFile(path.join(dir, "not-a-cert.pem"), "hello\n");
    database = await createTestDatabase();
  });
  afterAll(() =>
    stopAll(
      () => database?.drop(),
      () => fs.rm(dir, { recursive: true, force: true }),
    ),
  );

  /** The message startTestCairn fails with for these variables. */
  const startError = (env: Record<string, string>) =>
    startTestCairn({ env }).then(
      async (server) => {
        await server.stop();
        throw new Error(`the server started with ${JSON.stringify(env)}`);
      },
      (error: Error) => error.message,
    );

  it("refuses a key that is not the certificate's, naming both variables", async () => {
    const message = await startError({ TLS_CERT: path.join(dir, "a.crt"), TLS_KEY: path.join(dir, "b.key") });
    expect(message).toBe(
      `TLS_KEY (${path.join(dir, "b.key")}) is not the private key of the certificate in TLS_CERT (${path.join(dir, "a.crt")}): give the key it was made with.`,
    );
    expect(a.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it("refuses an unreadable or non-PEM file, naming its variable", async () => {
    expect(await startError({ TLS_CERT: path.join(dir, "missing.crt"), TLS_KEY: path.join(dir, "a.key") })).toBe(
      `TLS_CERT: cannot read ${path.join(dir, "missing.crt")} (no such file).`,
    );
    expect(await startError({ TLS_CERT: path.join(dir, "not-a-cert.pem"), TLS_KEY: path.join(dir, "a.key") })).toBe(
      `TLS_CERT (${path.join(dir, "not-a-cert.pem")}) does not hold a PEM certificate (-----BEGIN CERTIFICATE-----).`,
    );
    expect(await startError({ TLS_CERT: path.join(dir, "a.crt"), TLS_KEY: path.join(dir, "a.crt") })).toMatch(
      /^TLS_KEY \(.*a\.crt\) does not hold an unencrypted PEM private key/,
    );
  });

  it("refuses half a pair and a contradiction at configuration time", () => {
    const refused = (env: Record<string, string>) => {
      try {
        loadConfig(env, dir);
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error("accepted");
    };
    expect(refused({ TLS_CERT: "a.crt" })).toContain("TLS_KEY: expected with TLS_CERT");
    expect(refused({ TLS_KEY: "a.key" })).toContain("TLS_CERT: expected with TLS_KEY");
    expect(refused({ TLS: "off", TLS_CERT: "a.crt", TLS_KEY: "a.key" })).toContain("TLS=off: TLS_CERT and TLS_KEY are set");
    expect(refused({ TLS: "maybe" })).toContain('TLS="maybe": expected one of off, auto, on');
  });

  it("serves plain HTTP on loopback and HTTPS elsewhere under TLS=auto, the default", () => {
    expect(loadConfig({}, dir).tls).toBe("auto");
  });
});

describe("a self-signed certificate", () => {
  let dir: string;
  let database: TestDatabase;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "cairn-tls-self-"));
    database = await createTestDatabase();
  });
  afterAll(() =>
    stopAll(
      async () => {
        if (child && child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child!.once("exit", resolve));
          child.kill("SIGTERM");
          await exited;
        }
      },
      () => database?.drop(),
      () => fs.rm(dir, { recursive: true, force: true }),
    ),
  );

  it("is made on first start in DATA_DIR/tls, and the fingerprint npm start prints is the one served and openssl's", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([name]) =>
          !/^(DATABASE_URL|ADMIN_PASSWORD|SECRET_KEY|LAB.*|PORT|HOST|DATA_DIR|LOG_LEVEL|TLS.*|VITEST.*|NODE_OPTIONS|NODE_ENV)$/.test(name),
      ),
    );
    const dataDir = path.join(dir, "data");
    child = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
      cwd: REPO,
      env: { ...inherited, DATABASE_URL: database.url, DATA_DIR: dataDir, PORT: String(port), LAB: "off", TLS: "on", ADMIN_PASSWORD },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let stdout = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    const printed = await eventually(
      "npm start to print the certificate's fingerprint",
      async () => {
        if (child!.exitCode !== null) throw Object.assign(new Error(`the server exited:\n${stderr}`), { final: true });
        const match = /SHA-256 fingerprint: ([0-9A-F:]{95})/.exec(stderr);
        if (!match) throw new Error(`not printed yet; stderr so far:\n${stderr}`);
        return match[1];
      },
      { timeoutMs: 120_000, intervalMs: 50, stopWhen: (error) => (error as { final?: boolean }).final === true },
    );
    expect(stderr).toContain(`Cairn is ready at https://127.0.0.1:${port}`);
    expect(stderr).toContain(`self-signed, made on this start, ${path.join(dataDir, "tls", "cairn.crt")}`);
    expect(printed).toBe(opensslFingerprint(path.join(dataDir, "tls", "cairn.crt")));
    expect(await presentedFingerprint(`https://127.0.0.1:${port}`)).toBe(printed);
    // The log says it too, for whoever reads the journal rather than the console.
    expect(stdout).toContain(`"fingerprint":"${printed}"`);
    // The key is for Cairn's user only.
    expect((await fs.stat(path.join(dataDir, "tls", "cairn.key"))).mode & 0o077).toBe(0);
    // A client that trusts the file gets answers (the certificate names 127.0.0.1).
    const ca = await fs.readFile(path.join(dataDir, "tls", "cairn.crt"), "utf8");
    expect((await httpsGet(`https://127.0.0.1:${port}/healthz`, ca)).status).toBe(200);
  });

  it("is kept across starts, and remade only when it nears its end", async () => {
    const folder = path.join(dir, "kept");
    const first = await selfSignedCertificate(folder, ["cairn.example.net", "10.1.2.3"]);
    expect(first.created).toBe(true);
    const second = await selfSignedCertificate(folder);
    expect(second).toMatchObject({ created: false, fingerprint: first.fingerprint });
    // openssl reads what was written, with the names asked for, and accepts it as its own trust anchor.
    const certFile = path.join(folder, "cairn.crt");
    const text = execFileSync("openssl", ["x509", "-in", certFile, "-noout", "-text"], { encoding: "utf8" });
    expect(text).toMatch(
      /DNS:localhost, DNS:.+, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1, DNS:cairn\.example\.net, IP Address:10\.1\.2\.3/,
    );
    expect(execFileSync("openssl", ["verify", "-CAfile", certFile, certFile], { encoding: "utf8" })).toContain("OK");
    // 825 days of validity: 800 days later it is within the 30 days of renewal.
    const later = await selfSignedCertificate(folder, [], new Date(Date.now() + 800 * 24 * 3600 * 1000));
    expect(later.created).toBe(true);
    expect(later.fingerprint).not.toBe(first.fingerprint);
    expect(later.fingerprint).toBe(opensslFingerprint(certFile));
  });
});
