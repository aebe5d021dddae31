/**
 * Sends the report of every ended backup run, by email and webhook, as the job's settings ask (report-policy.ts).
 *
 * Hooked on the event bus: every process sees every `run` event (Postgres NOTIFY), and tries to claim the run's report with a
 * conditional UPDATE of `Run.reportedAt` (reports.sql.ts): exactly one process wins, whatever the number of processes, and a
 * run is looked at once. A sweep at start and every `sweepIntervalMs` claims ended runs whose event nobody handled (all
 * processes were down, or the listener was reconnecting). The claim comes before sending: a process that dies while
 * sending loses that report (at most once, never twice).
 *
 * A delivery never changes the run's status. The decision and each delivery's result are recorded in the run's
 * `params.reports` (RunReportRecord: `{ reportWhen, wanted, deliveries: [{ channel, ok, at, attempts, to, error? }] }`), then a
 * `run` event is published; a failed delivery is also logged and added as a warning to the run's
 * root task, where the API (`Run.tasks`) and the dashboard show it. A SKIPPED run of a busy job has no task tree: only
 * `params.reports` and the log record it.
 */
import type { Db } from "../db/prisma.js";
import type { EventBus } from "../events/event-bus.js";
import type { Logger } from "../log.js";
import { effectiveSettings } from "../domain/job-settings.js";
import { messageOf } from "../errors.js";
import { createEmailSender, type EmailSender } from "./email-sender.js";
import { reportEmail, webhookPayload } from "./report-content.js";
import { shouldReport } from "./report-policy.js";
import { claimReport, recordDeliveries, unreportedRuns, warnRootTask, type ClaimedRun } from "./reports.sql.js";
import { loadRunReport } from "./run-report.js";
import { postWebhook, type WebhookOptions } from "./webhook-sender.js";

export interface ReportDispatcherOptions {
  db: Db;
  events: EventBus;
  log: Logger;
  /** Base of the run links (config.publicUrl, or the listen address). */
  publicUrl: string;
  /** SMTP_URL and SMTP_FROM; without a URL, a job asking for email gets a failed delivery saying so. */
  smtp: { url?: string; from: string };
  /** @default 60000 */
  sweepIntervalMs?: number;
  /** Webhook timeout, retries and backoff. @default postWebhook's (10 s, 2 retries, 1 s then 2 s) */
  webhook?: Omit<WebhookOptions, "signal">;
  /** How long stop() lets deliveries under way finish before aborting them. @default 5000 */
  stopGraceMs?: number;
}

export interface Delivery {
  channel: "email" | "webhook";
  ok: boolean;
  /** When the delivery ended (ISO 8601). */
  at: string;
  attempts: number;
  /** How many addresses (email), or the webhook's host (never its path or query, which may hold a token). */
  to: string | number;
  error?: string;
}

/** What `Run.params.reports` holds once a run's report was handled. */
export interface RunReportRecord {
  /** The job's policy when the run was reported. */
  reportWhen: string;
  /** Whether the policy asked for a report of this run. */
  wanted: boolean;
  /** One per channel the job configures (none when not wanted, or the job has no address and no webhook). */
  deliveries: Delivery[];
}

export interface ReportDispatcher {
  /**
   * Claims and reports one run: null when another process (or an earlier call) took it, or it is not an ended backup run;
   * else the deliveries made (empty when the policy or the job's settings ask for none).
   */
  report(runId: string): Promise<Delivery[] | null>;
  /** Reports ended runs nobody claimed; returns how many this call claimed. */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

const SWEEP_GRACE_SECONDS = 10;
const SWEEP_BATCH = 50;

export function startReportDispatcher(options: ReportDispatcherOptions): ReportDispatcher {
  const { db, events, log } = options;
  const email: EmailSender | undefined = options.smtp.url
    ? createEmailSender({ smtpUrl: options.smtp.url, from: options.smtp.from })
    : undefined;
  const stopping = new AbortController();
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(work: Promise<T>): Promise<T> => {
    inFlight.add(work);
    // The caller awaits `work` and handles its failure; this derived promise only must not be an unhandled rejection.
    void work.finally(() => inFlight.delete(work)).catch(() => undefined);
    return work;
  };

  const deliver = async (claimed: ClaimedRun): Promise<Delivery[]> => {
    const runLog = log.child({ runId: claimed.id, jobId: claimed.jobId, component: "reports" });
    const job = claimed.jobId ? await db.job.findUnique({ where: { id: claimed.jobId }, select: { settings: true } }) : null;
    if (!job) return [];
    const settings = effectiveSettings(job.settings);
    const wanted = shouldReport(settings.reportWhen, claimed);
    const report = wanted ? await loadRunReport(db, claimed.id, options.publicUrl) : null;

    const sends: Promise<Delivery>[] = [];
    if (report && settings.reportEmails.length > 0) {
      const to = settings.reportEmails.length;
      sends.push(
        (async (): Promise<Delivery> => {
          if (!email)
            return {
              channel: "email",
              ok: false,
              at: new Date().toISOString(),
              attempts: 0,
              to,
              error: "SMTP_URL is not set: Cairn cannot send email",
            };
          try {
            await email.send(settings.reportEmails, reportEmail(report), stopping.signal);
            return { channel: "email", ok: true, at: new Date().toISOString(), attempts: 1, to };
          } catch (error) {
            return { channel: "email", ok: false, at: new Date().toISOString(), attempts: 1, to, error: messageOf(error) };
          }
        })(),
      );
    }
    if (report && settings.reportWebhookUrl) {
      const host = new URL(settings.reportWebhookUrl).host;
      sends.push(
        postWebhook(settings.reportWebhookUrl, webhookPayload(report), claimed.id, { ...options.webhook, signal: stopping.signal }).then(
          (result): Delivery => ({
            channel: "webhook",
            ok: result.ok,
            at: new Date().toISOString(),
            attempts: result.attempts,
            to: host,
            ...(result.error && { error: result.error }),
          }),
        ),
      );
    }
    const deliveries = await Promise.all(sends);
    for (const d of deliveries) {
      if (d.ok) runLog.info({ channel: d.channel, to: d.to, attempts: d.attempts }, "run report sent");
      else runLog.warn({ channel: d.channel, to: d.to, attempts: d.attempts, error: d.error }, "run report not delivered");
    }
    // Recorded even when nothing was sent: "why did I get no mail?" has its answer on the run (`wanted` false, or no address).
    await db.$executeRaw(recordDeliveries(claimed.id, { reportWhen: settings.reportWhen, wanted, deliveries } satisfies RunReportRecord));
    const failed = deliveries.filter((d) => !d.ok).map(warningOf);
    if (failed.length > 0) {
      const tasks = await db.$queryRaw<{ id: string }[]>(warnRootTask(claimed.id, failed));
      for (const task of tasks) await events.publish({ type: "task", runId: claimed.id, taskId: task.id });
    }
    await events.publish({ type: "run", runId: claimed.id, jobId: claimed.jobId });
    return deliveries;
  };

  const report = (runId: string): Promise<Delivery[] | null> =>
    track(
      (async () => {
        const [claimed] = await db.$queryRaw<ClaimedRun[]>(claimReport(runId));
        if (!claimed) return null;
        return deliver(claimed);
      })(),
    );

  const reportQuietly = (runId: string) =>
    report(runId).catch((error: unknown) => log.error({ err: error, runId, component: "reports" }, "could not report a run"));

  const sweep = async (): Promise<number> => {
    const rows = await db.$queryRaw<{ id: string }[]>(unreportedRuns(SWEEP_GRACE_SECONDS, SWEEP_BATCH));
    const results = await Promise.all(rows.map((row) => reportQuietly(row.id)));
    return results.filter((r) => r !== null && r !== undefined).length;
  };

  const subscription = new AbortController();
  const listening = (async () => {
    // Every run event of every run: the claim is one indexed UPDATE that matches nothing until the run has ended.
    for await (const event of events.subscribe(subscription.signal, (e) => e.type === "run")) void reportQuietly(event.runId);
  })();
  const sweepQuietly = () =>
    void track(sweep().catch((error: unknown) => log.warn({ err: error, component: "reports" }, "report sweep failed")));
  sweepQuietly();
  const timer = setInterval(sweepQuietly, options.sweepIntervalMs ?? 60_000);
  timer.unref();

  return {
    report,
    sweep,
    async stop() {
      clearInterval(timer);
      subscription.abort();
      await listening;
      let graceTimer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, options.stopGraceMs ?? 5000)));
      await Promise.race([Promise.allSettled([...inFlight]), grace]);
      stopping.abort();
      await Promise.allSettled([...inFlight]);
      clearTimeout(graceTimer);
      email?.close();
    },
  };
}

function warningOf(delivery: Delivery): string {
  const where =
    delivery.channel === "email" ? `by email to ${delivery.to} address${delivery.to === 1 ? "" : "es"}` : `by webhook to ${delivery.to}`;
  const tries = delivery.attempts > 1 ? ` after ${delivery.attempts} attempts` : "";
  return `The run's report could not be sent ${where}${tries}: ${delivery.error ?? "unknown error"}`;
}
