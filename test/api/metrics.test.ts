/**
 * /metrics for Prometheus: off unless configured, behind a Cairn token when METRICS=token, and figures that match what
 * the API says after a real backup of the lab. Every line is checked against the text format's grammar.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BackupFixture, expectSuccess, startBackupFixture } from "../support/backup-fixture.js";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { stopAll } from "../support/stop-all.js";

// The exposition format 0.0.4: comments, or `name{label="value",...} number`.
const METRIC_NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const SAMPLE = new RegExp(`^(${METRIC_NAME})(?:\\{(${LABEL}(?:,${LABEL})*)\\})? (-?[0-9.e+]+|NaN|[+-]Inf)$`);
const COMMENT = new RegExp(`^# (?:HELP ${METRIC_NAME} .*|TYPE ${METRIC_NAME} (?:counter|gauge|histogram|summary|untyped))$`);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the exposition strictly: a line that is neither a comment nor a sample fails the test. */
function parse(text: string): Sample[] {
  expect(text.endsWith("\n")).toBe(true);
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("#")) {
      expect(line, "a comment line").toMatch(COMMENT);
      continue;
    }
    const match = SAMPLE.exec(line);
    expect(match, `"${line}" is a sample line`).not.toBeNull();
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match![2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    samples.push({ name: match![1], labels, value: Number(match![3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((sample) => sample.name === name && Object.entries(labels).every(([key, v]) => sample.labels[key] === v))?.value;
}

describe("/metrics with METRICS=token", () => {
  let f: BackupFixture;
  let viewerToken: string;
  beforeAll(async () => {
    f = await startBackupFixture({ env: { METRICS: "token" } });
    viewerToken = (
      await f.gql<{ createApiToken: { token: string } }>('mutation { createApiToken(name: "prometheus", role: VIEWER) { token } }')
    ).createApiToken.token;
  }, 120_000);
  afterAll(() => stopAll(() => f?.stop()));

  const scrape = (authorization?: string) => fetch(`${f.server.url}/metrics`, { headers: authorization ? { authorization } : {} });

  it("refuses a scrape without a valid Cairn token", async () => {
    const anonymous = await scrape();
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toContain("Bearer");
    const forged = await scrape(`Bearer cairn_${"0".repeat(43)}`);
    expect(forged.status).toBe(401);
    expect(await forged.text()).not.toMatch(/at .*\.ts|SELECT|prisma/i);
  });

  it("reports a finished backup's run, its job's last success, the pool and the remote", async () => {
    const vm = f.vm("win-fat");
    // A job name with the characters the format escapes.
    const job = await f.createJob({
      name: 'metrics "quoted" \\ job',
      mode: "FULL",
      selection: { vmUuids: [vm.uuid] },
      remoteIds: [f.remoteId],
    });
    const run = await f.runToEnd(job.id);
    expectSuccess(run);
    const ended = (await f.gql<{ run: { endedAt: string } }>("query($id: ID!) { run(id: $id) { endedAt } }", { id: run.id })).run.endedAt;

    const response = await scrape(`Bearer ${viewerToken}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const samples = parse(await response.text());

    expect(value(samples, "cairn_runs", { kind: "BACKUP", status: "SUCCESS" })).toBeGreaterThanOrEqual(1);
    expect(value(samples, "cairn_run_transferred_bytes", { kind: "BACKUP", status: "SUCCESS" })).toBeGreaterThanOrEqual(
      run.transferredBytes,
    );
    expect(value(samples, "cairn_job_last_success_timestamp_seconds", { job: 'metrics "quoted" \\ job' })).toBe(
      Math.floor(new Date(ended).getTime() / 1000),
    );
    expect(value(samples, "cairn_pool_connected", { status: "CONNECTED" })).toBe(1);
    const points = await f.restorePoints(job.id);
    const remoteName = (await f.gql<{ remotes: { id: string; name: string }[] }>("{ remotes { id name } }")).remotes.find(
      (remote) => remote.id === f.remoteId,
    )!.name;
    expect(value(samples, "cairn_restore_points", { remote: remoteName })).toBeGreaterThanOrEqual(points.length);
    expect(value(samples, "cairn_process_resident_memory_bytes", {})).toBeGreaterThan(0);
  }, 180_000);
});

describe("/metrics by default", () => {
  let server: TestCairn;
  beforeAll(async () => {
    server = await startTestCairn();
  }, 120_000);
  afterAll(() => stopAll(() => server?.stop()));

  it("is not served at all (404), even to a signed-in admin", async () => {
    const token = await server.login();
    const response = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(404);
  });
});
