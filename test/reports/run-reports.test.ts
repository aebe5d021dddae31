/**
 * Run reports against a real Cairn server with the lab, a real SMTP server (AUTH required) and a real webhook receiver:
 * what is sent for which run and policy, what a report says, how a failed delivery is recorded, and that one report per run
 * leaves the cluster whatever the number of processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrismaClient, type Db } from "../../server/db/prisma.js";
import { createEventBus, type EventBus } from "../../server/events/event-bus.js";
import { createLogger } from "../../server/log.js";
import { createEmailSender } from "../../server/reports/email-sender.js";
import { startReportDispatcher, type ReportDispatcher, type RunReportRecord } from "../../server/reports/report-dispatcher.js";
import { startBackupFixture, type BackupFixture } from "../support/backup-fixture.js";
import { startSmtpPeer, startWebhookPeer, type SmtpPeer, type WebhookPeer } from "./report-peers.js";

const SMTP_USER = "cairn-mailer";
const SMTP_PASSWORD = "Sm7p:p@ss/w0rd%secret";
const PUBLIC_URL = "https://cairn.example.net";
const RECIPIENTS = ["ops@example.net", "backup-team@example.net"];

describe("run reports", () => {
  let f: BackupFixture;
  let smtp: SmtpPeer;
  let hooks: WebhookPeer;
  let db: Db;
  let smtpUrl: string;

  beforeAll(async () => {
    smtp = await startSmtpPeer({ username: SMTP_USER, password: SMTP_PASSWORD });
    hooks = await startWebhookPeer();
    smtpUrl = `smtp://${SMTP_USER}:${encodeURIComponent(SMTP_PASSWORD)}@127.0.0.1:${smtp.port}`;
    // The webhook receiver listens on this machine: allowed only with REPORT_WEBHOOK_ALLOW_PRIVATE.
    f = await startBackupFixture({
      env: { SMTP_URL: smtpUrl, SMTP_FROM: "Cairn Tests <cairn@tests.example>", PUBLIC_URL, REPORT_WEBHOOK_ALLOW_PRIVATE: "true" },
    });
    db = createPrismaClient(f.server.database.url);
  });

  afterAll(async () => {
    await db?.$disconnect();
    await f?.stop();
    await hooks?.stop();
    await smtp?.stop();
  });

  const createJob = (name: string, reportWhen: string, hookPath: string, vms = ["win-fat"]) =>
    f.createJob({
      name,
      mode: "FULL",
      selection: { vmUuids: vms.map((vm) => f.vm(vm).uuid) },
      remoteIds: [f.remoteId],
      settings: { reportWhen, reportEmails: RECIPIENTS, reportWebhookUrl: `${hooks.url}${hookPath}` },
      schedules: [{ cron: "0 3 * * *", exportRetention: 2 }],
    });

  /** Resolves with `params.reports` once the run's report was handled (re-read at each of the run's events; no polling). */
  const reported = async (runId: string): Promise<RunReportRecord> => {
    const controller = new AbortController();
    const events = f.server.cairn.services.events.subscribe(controller.signal);
    const timer = setTimeout(() => controller.abort(), 60_000);
    const read = async () =>
      ((await db.run.findUniqueOrThrow({ where: { id: runId }, select: { params: true } })).params as { reports?: RunReportRecord } | null)
        ?.reports;
    try {
      let record = await read();
      if (record) return record;
      for await (const event of events) {
        if (event.type !== "run" || event.runId !== runId) continue;
        record = await read();
        if (record) return record;
      }
      throw new Error(`the report of run ${runId} was not handled within 60 s`);
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  };

  const mailsOf = (jobName: string) => smtp.mails.filter((m) => m.subject.startsWith(`[Cairn] ${jobName}:`));
  const hooksAt = (path: string) => hooks.requests.filter((r) => r.path === path);

  it("mails and posts one report of a FAILURE run when the policy is FAILURE: subject, VM lines, link, JSON", async () => {
    const job = await createJob("nightly-full", "FAILURE", "/hooks/failure", ["win-fat", "db-data"]);
    await f.setFault("snapshot_fails", { count: 1 });
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    await f.clearFaults();
    expect(run.status).toBe("FAILURE");
    const record = await reported(run.id);
    expect(record).toMatchObject({ reportWhen: "FAILURE", wanted: true });
    expect(record.deliveries.map((d) => [d.channel, d.ok])).toEqual(
      expect.arrayContaining([
        ["email", true],
        ["webhook", true],
      ]),
    );

    const [mail] = mailsOf("nightly-full");
    expect(mailsOf("nightly-full")).toHaveLength(1);
    expect(mail.subject).toBe("[Cairn] nightly-full: FAILURE (1 of 2 VMs failed)");
    expect(mail.auth).toEqual({ username: SMTP_USER, password: SMTP_PASSWORD });
    expect(mail.from).toBe("cairn@tests.example");
    expect(mail.to.sort()).toEqual([...RECIPIENTS].sort());
    const failed = run.tasks.find((t: any) => t.kind === "vm" && t.status === "FAILURE");
    const succeeded = run.tasks.find((t: any) => t.kind === "vm" && t.status === "SUCCESS");
    expect(mail.text).toMatch(new RegExp(`FAILURE +${failed.name} `));
    expect(mail.text).toMatch(new RegExp(`SUCCESS +${succeeded.name} +[\\d.]+ (KiB|MiB)`));
    expect(mail.text).toMatch(/error: .*SR_BACKEND_FAILURE_44/);
    expect(mail.text).toContain(`Details: ${PUBLIC_URL}/runs/${run.id}`);
    expect(mail.html).toContain(`<a href="${PUBLIC_URL}/runs/${run.id}">`);
    expect(mail.html).toContain(failed.name);
    expect(mail.html).toContain(succeeded.name);

    const requests = hooksAt("/hooks/failure");
    expect(requests).toHaveLength(1);
    expect(requests[0].headers["content-type"]).toBe("application/json");
    expect(requests[0].headers["x-cairn-delivery"]).toBe(run.id);
    expect(requests[0].body).toEqual({
      event: "run.ended",
      run: {
        id: run.id,
        job: { id: job.id, name: "nightly-full" },
        status: "FAILURE",
        error: run.error,
        startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        endedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        transferredBytes: run.transferredBytes,
        vms: expect.arrayContaining([
          {
            uuid: failed.vmUuid,
            name: failed.name,
            status: "FAILURE",
            error: expect.stringMatching(/SR_BACKEND_FAILURE_44/),
            warnings: [],
            sizeBytes: 0,
          },
          { uuid: succeeded.vmUuid, name: succeeded.name, status: "SUCCESS", error: null, warnings: [], sizeBytes: succeeded.sizeBytes },
        ]),
      },
      url: `${PUBLIC_URL}/runs/${run.id}`,
    });
    expect(requests[0].body.run.vms).toHaveLength(2);
    expect(succeeded.sizeBytes).toBeGreaterThan(0);
  });

  it("sends nothing for a SUCCESS run when the policy is FAILURE", async () => {
    const job = await createJob("quiet-success", "FAILURE", "/hooks/quiet");
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expect(run.status).toBe("SUCCESS");
    expect(await reported(run.id)).toEqual({ reportWhen: "FAILURE", wanted: false, deliveries: [] });
    expect(mailsOf("quiet-success")).toEqual([]);
    expect(hooksAt("/hooks/quiet")).toEqual([]);
  });

  it("reports a SUCCESS run when the policy is ALWAYS", async () => {
    const job = await createJob("always-told", "ALWAYS", "/hooks/always");
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expect(run.status).toBe("SUCCESS");
    const record = await reported(run.id);
    expect(record.wanted).toBe(true);
    expect(record.deliveries.every((d) => d.ok)).toBe(true);
    expect(mailsOf("always-told").map((m) => m.subject)).toEqual(["[Cairn] always-told: SUCCESS (1 VM backed up)"]);
    expect(hooksAt("/hooks/always").map((r) => [r.body.run.status, r.body.run.vms.map((vm: any) => vm.name)])).toEqual([
      ["SUCCESS", ["win-fat"]],
    ]);
  });

  it("sends nothing when the policy is NEVER, even for a FAILURE", async () => {
    const job = await createJob("never-told", "NEVER", "/hooks/never");
    await f.setFault("snapshot_fails", { count: 1 });
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    await f.clearFaults();
    expect(run.status).toBe("FAILURE");
    expect(await reported(run.id)).toEqual({ reportWhen: "NEVER", wanted: false, deliveries: [] });
    expect(mailsOf("never-told")).toEqual([]);
    expect(hooksAt("/hooks/never")).toEqual([]);
  });

  it("retries a webhook that answers 500, then records the failed delivery as a warning on the run, whose status stays", async () => {
    hooks.answer("/hooks/broken", 500);
    const job = await createJob("broken-hook", "ALWAYS", "/hooks/broken");
    const run = await f.runToEnd(job.id, job.schedules[0].id);
    expect(run.status).toBe("SUCCESS");
    const record = await reported(run.id);
    expect(record.deliveries.find((d) => d.channel === "webhook")).toMatchObject({
      ok: false,
      attempts: 3,
      error: "HTTP 500 Internal Server Error",
    });
    expect(record.deliveries.find((d) => d.channel === "email")).toMatchObject({ ok: true });
    const requests = hooksAt("/hooks/broken");
    expect(requests).toHaveLength(3);
    expect(new Set(requests.map((r) => r.headers["x-cairn-delivery"]))).toEqual(new Set([run.id]));

    const after = (
      await f.gql<{ run: any }>(`query($id: ID!) { run(id: $id) { status error vmsFailed tasks { parentId warnings } } }`, { id: run.id })
    ).run;
    expect(after).toMatchObject({ status: "SUCCESS", error: null, vmsFailed: 0 });
    const root = after.tasks.find((t: any) => t.parentId === null);
    expect(root.warnings).toEqual([
      `The run's report could not be sent by webhook to ${new URL(hooks.url).host} after 3 attempts: HTTP 500 Internal Server Error`,
    ]);
    expect(f.server.logs.join("")).toMatch(/"msg":"run report not delivered"/);
  });

  it("sends one report per run however many Cairn processes (dispatchers) share the database", async () => {
    const log = createLogger("silent");
    const others: { db: Db; events: EventBus; dispatcher: ReportDispatcher }[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const otherDb = createPrismaClient(f.server.database.url);
        const events = await createEventBus(f.server.database.url, log);
        const dispatcher = startReportDispatcher({
          db: otherDb,
          events,
          log,
          publicUrl: PUBLIC_URL,
          smtp: { url: smtpUrl, from: "cairn@tests.example" },
          webhook: { allowPrivate: true },
        });
        others.push({ db: otherDb, events, dispatcher });
      }
      // Three dispatchers (the server's and two more) see every event of this run and race for its report.
      const job = await createJob("cluster-wide", "ALWAYS", "/hooks/cluster");
      const run = await f.runToEnd(job.id, job.schedules[0].id);
      await reported(run.id);
      expect(hooksAt("/hooks/cluster")).toHaveLength(1);
      expect(mailsOf("cluster-wide")).toHaveLength(1);

      // Unclaimed again: all at once, by calls and sweeps; exactly one claim wins.
      await db.$executeRaw`UPDATE "Run" SET "reportedAt" = NULL, params = NULL, "endedAt" = "endedAt" - interval '1 minute' WHERE id = ${run.id}::uuid`;
      const results = await Promise.all(
        [...others, ...others].flatMap(({ dispatcher }) => [dispatcher.report(run.id), dispatcher.sweep()]),
      );
      const reports = results.filter((r) => Array.isArray(r));
      const swept = results.filter((r) => typeof r === "number").reduce((sum: number, n) => sum + (n as number), 0);
      // (The server's own periodic sweep may be the one that wins: then none of these.)
      expect(reports.length + swept).toBeLessThanOrEqual(1);
      await reported(run.id);
      expect(hooksAt("/hooks/cluster")).toHaveLength(2);
      expect(mailsOf("cluster-wide")).toHaveLength(2);
    } finally {
      for (const other of others) {
        await other.dispatcher.stop();
        await other.events.close();
        await other.db.$disconnect();
      }
    }
  });

  it("never shows the SMTP password: not in the logs, not in API answers, not in a delivery error", async () => {
    const secrets = [SMTP_PASSWORD, encodeURIComponent(SMTP_PASSWORD)];
    const answers = await f.gql(`{ jobs { name settings { reportWhen reportEmails reportWebhookUrl } }
      runs(first: 50) { nodes { id status error tasks { message warnings result } } } }`);
    const text = JSON.stringify(answers) + f.server.logs.join("");
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(f.server.logs.join("")).toMatch(/"msg":"run report sent"/);

    // A wrong password: the SMTP server refuses it, and the error says so without the password given.
    const wrong = "Wrong-pa55word-Nobody-Knows";
    const sender = createEmailSender({ smtpUrl: `smtp://${SMTP_USER}:${wrong}@127.0.0.1:${smtp.port}`, from: "cairn@tests.example" });
    try {
      const error = await sender.send(["ops@example.net"], { subject: "x", text: "x", html: "x" }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toMatch(/535|auth|login/i);
      expect(error?.message).not.toContain(wrong);
    } finally {
      sender.close();
    }
  });

  it("refuses bad report settings with BAD_USER_INPUT naming the field", async () => {
    const attempt = async (settings: Record<string, unknown>) => {
      const result = await f.server.graphql(
        "mutation($input: JobInput!) { createJob(input: $input) { id } }",
        {
          input: {
            name: `bad-${Math.random()}`,
            mode: "FULL",
            selection: { vmUuids: [f.vm("win-fat").uuid] },
            remoteIds: [f.remoteId],
            settings,
          },
        },
        f.token,
      );
      return result.errors?.[0]?.extensions;
    };
    expect(await attempt({ reportEmails: ["ops@example.net", "not an address"] })).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "input.settings.reportEmails.1",
    });
    expect(await attempt({ reportEmails: Array.from({ length: 21 }, (_, i) => `ops${i}@example.net`) })).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "input.settings.reportEmails",
    });
    expect(await attempt({ reportWebhookUrl: "ftp://hooks.example.net/x" })).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "input.settings.reportWebhookUrl",
    });
    expect(await attempt({ reportWebhookUrl: "not a url" })).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "input.settings.reportWebhookUrl",
    });
    // Defaults for a job that says nothing of reports.
    const job = await f.createJob({
      name: "defaults",
      mode: "FULL",
      selection: { vmUuids: [f.vm("win-fat").uuid] },
      remoteIds: [f.remoteId],
    });
    const read = await f.gql<{ job: any }>(`query($id: ID!) { job(id: $id) { settings { reportWhen reportEmails reportWebhookUrl } } }`, {
      id: job.id,
    });
    expect(read.job.settings).toEqual({ reportWhen: "FAILURE", reportEmails: [], reportWebhookUrl: null });
  });
});
