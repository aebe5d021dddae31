/**
 * POSTs a report as JSON to a job's webhook, with a timeout per attempt and retries with exponential backoff.
 *
 * Retried: network errors, timeouts, HTTP 408, 429 and 5xx. Not retried: other answers outside 2xx (the receiver refused
 * the request; the same request would be refused again), redirects included (never followed: a redirect could lead where the
 * URL itself may not go), and a refused target. Each request carries `X-Cairn-Delivery: <run id>`, the same on every
 * attempt, so a receiver can drop a duplicate (an attempt that timed out here may have been processed there).
 *
 * Unless `allowPrivate` (REPORT_WEBHOOK_ALLOW_PRIVATE), a webhook may not reach this machine or the link-local network
 * (domain/webhook-target.ts): the URL's host is checked as written, and a name is checked on the addresses it resolves to,
 * in the lookup of the very connection that is made (no gap between the check and the connect for a resolver to change its
 * answer in).
 */
import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { ALLOW_PRIVATE_HINT, refusedAddressKind, refusedWebhookHost } from "../domain/webhook-target.js";
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
  /** Let the webhook reach loopback, unspecified and link-local addresses (REPORT_WEBHOOK_ALLOW_PRIVATE). @default false */
  allowPrivate?: boolean;
}

export interface WebhookResult {
  ok: boolean;
  attempts: number;
  /** HTTP status of the last answer, if any. */
  status?: number;
  /** Why the last attempt failed. */
  error?: string;
}

/** The webhook's target is an address it may not reach: permanent, never retried. */
class TargetRefused extends Error {
  constructor(reason: string) {
    super(`refused to send: ${reason}, where a report webhook may not go; ${ALLOW_PRIVATE_HINT}`);
    this.name = "TargetRefused";
  }
}

export async function postWebhook(url: string, body: unknown, deliveryId: string, options: WebhookOptions = {}): Promise<WebhookResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retries = options.retries ?? 2;
  const backoffMs = options.backoffMs ?? 1000;
  const payload = JSON.stringify(body);
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return { ok: false, attempts: 0, error: "the webhook URL is not a URL" };
  }
  if (!options.allowPrivate) {
    const refused = refusedWebhookHost(target);
    if (refused) return { ok: false, attempts: 0, error: new TargetRefused(refused).message };
  }
  let result: WebhookResult = { ok: false, attempts: 0 };
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    if (attempt > 1) {
      const waited = await wait(backoffMs * 2 ** (attempt - 2), options.signal);
      if (!waited) return { ...result, error: `${result.error}; then stopped (Cairn is stopping)` };
    }
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      const answer = await post(target, payload, deliveryId, signal, options.allowPrivate ?? false);
      if (answer.status >= 200 && answer.status < 300) return { ok: true, attempts: attempt, status: answer.status };
      result = {
        ok: false,
        attempts: attempt,
        status: answer.status,
        error: `HTTP ${answer.status}${answer.statusText ? ` ${answer.statusText}` : ""}`,
      };
      if (!(answer.status === 408 || answer.status === 429 || answer.status >= 500)) return result;
    } catch (error) {
      if (error instanceof TargetRefused) return { ok: false, attempts: attempt, error: error.message };
      const reason = timeout.aborted
        ? `no answer within ${timeoutMs / 1000} s`
        : options.signal?.aborted
          ? "stopped (Cairn is stopping)"
          : requestFailure(error);
      result = { ok: false, attempts: attempt, error: reason };
      if (options.signal?.aborted) return result;
    }
  }
  return result;
}

/** One POST; resolves with the answer's status as soon as its head arrives (the body is drained, not read). */
function post(
  target: URL,
  payload: string,
  deliveryId: string,
  signal: AbortSignal,
  allowPrivate: boolean,
): Promise<{ status: number; statusText: string }> {
  return new Promise((resolve, reject) => {
    const send = target.protocol === "https:" ? https.request : http.request;
    const request = send(
      target,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
          "user-agent": "Cairn",
          "x-cairn-event": "run.ended",
          "x-cairn-delivery": deliveryId,
        },
        signal,
        ...(allowPrivate ? {} : { lookup: guardedLookup }),
      },
      (response) => {
        // A receiver's answer is only its status: drain the body so the connection is released.
        response.resume();
        response.on("error", () => undefined);
        resolve({ status: response.statusCode ?? 0, statusText: response.statusMessage ?? "" });
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}

/** dns.lookup, failing the connection when any address the name resolves to is one a webhook may not reach. */
const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, "", 4);
    const refused = addresses.map((a) => ({ address: a.address, kind: refusedAddressKind(a.address) })).find((a) => a.kind !== null);
    if (refused) return callback(new TargetRefused(`${hostname} resolves to ${refused.address}, ${refused.kind}`), "", 4);
    if (options.all) return (callback as unknown as (error: null, addresses: dns.LookupAddress[]) => void)(null, addresses);
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`${hostname} resolves to no address`), { code: "ENOTFOUND" }), "", 4);
    callback(null, first.address, first.family);
  });
};

/**
 * A failed request's reason: its code (ECONNREFUSED, ENOTFOUND, a TLS error...), with its text ({@link messageOf}) when
 * that says more.
 */
function requestFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const text = messageOf(error);
  if (typeof code !== "string" || code === "") return text;
  return text.includes(code) ? code : `${code} (${text})`;
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
