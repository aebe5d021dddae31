/**
 * POSTs a report as JSON to a job's webhook, with a timeout per attempt and retries with exponential backoff.
 *
 * Retried: network errors, timeouts, HTTP 408, 429 and 5xx. Not retried: other answers outside 2xx (the receiver refused
 * the request; the same request would be refused again). Each request carries `X-Cairn-Delivery: <run id>`, the same on every
 * attempt, so a receiver can drop a duplicate (an attempt that timed out here may have been processed there).
 */
import { messageOf } from "../errors.js";

export interface WebhookOptions {
  /** Per attempt. @default 10000 */
  timeoutMs?: number;
  /** Attempts after the first. @default 2 */
  retries?: number;
  /** Wait before the first retry; doubled before each next one. @default 1000 */
  backoffMs?: number;
  /** Aborts the delivery (between or during attempts). */
  signal?: AbortSignal;
}

export interface WebhookResult {
  ok: boolean;
  attempts: number;
  /** HTTP status of the last answer, if any. */
  status?: number;
  /** Why the last attempt failed. */
  error?: string;
}

export async function postWebhook(url: string, body: unknown, deliveryId: string, options: WebhookOptions = {}): Promise<WebhookResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retries = options.retries ?? 2;
  const backoffMs = options.backoffMs ?? 1000;
  const payload = JSON.stringify(body);
  let result: WebhookResult = { ok: false, attempts: 0 };
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    if (attempt > 1) {
      const waited = await wait(backoffMs * 2 ** (attempt - 2), options.signal);
      if (!waited) return { ...result, error: `${result.error}; then stopped (Cairn is stopping)` };
    }
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "Cairn",
          "x-cairn-event": "run.ended",
          "x-cairn-delivery": deliveryId,
        },
        body: payload,
        signal,
      });
      // The body is not read: a receiver's answer is only its status; cancel it so the connection is released. A cancel that
      // fails changes nothing: the status is the answer, and undici drops the connection itself.
      await response.body?.cancel().catch(() => undefined);
      if (response.ok) return { ok: true, attempts: attempt, status: response.status };
      result = {
        ok: false,
        attempts: attempt,
        status: response.status,
        error: `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`,
      };
      if (!(response.status === 408 || response.status === 429 || response.status >= 500)) return result;
    } catch (error) {
      const reason = timeout.aborted
        ? `no answer within ${timeoutMs / 1000} s`
        : options.signal?.aborted
          ? "stopped (Cairn is stopping)"
          : fetchFailure(error);
      result = { ok: false, attempts: attempt, error: reason };
      if (options.signal?.aborted) return result;
    }
  }
  return result;
}

/**
 * fetch's "fetch failed" hides the reason in `cause` (ECONNREFUSED, ENOTFOUND, a TLS error...): the cause's code, with its
 * text ({@link messageOf}) when that says more; else the text of the cause, or of the error.
 */
function fetchFailure(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
  if (cause === undefined) return messageOf(error);
  const code = (cause as NodeJS.ErrnoException).code;
  if (typeof code !== "string" || code === "") return messageOf(cause);
  const text = messageOf(cause);
  return `${code}${cause.message && !text.includes(code) ? ` (${text})` : ""}`;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function wait(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
