/**
 * `PUT` of an upload (an /import, an /import_raw_vdi) to the pool master, under a XAPI task we watch ourselves.
 *
 * Why not xen-api's putResource: for a stream of unknown length it sends XAPI's 1 PiB Content-Length and, as soon as the body
 * is written, destroys the socket. XAPI has already answered (its early 200), so that close is a reset which can drop the
 * last bytes still in flight: the import then fails with VDI_IO_ERROR, which the client ignores by design; and when the
 * request errors (a cancel) it leaves the task's promise unobserved (an unhandled rejection). Here the connection stays open
 * until XAPI's task has ended, the task's result decides the outcome, and every promise is observed.
 *
 * {@link cancellableUpload} wraps it with XAPI's task, a stop and a failing body: the one upload of restores and replication.
 */
import http from "node:http";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { CertificateRefusedError, certificateRefusal, PINNING_TLS_OPTIONS } from "./tls-trust.js";
import type { Readable } from "node:stream";
import type { PoolConnection } from "./pool-connection.js";
import { describeXapiError, isNetworkError, PoolUnreachableError } from "./pool-connection.js";

/** XAPI's convention for an upload whose length is not known in advance. */
const UNKNOWN_LENGTH = "1125899906842624";

interface TaskClient {
  readonly sessionId: string;
  watchTask(ref: string): Promise<unknown>;
}

/** Connection attempts of an upload that could not reach the host at all (no byte of the body was read yet). */
const CONNECT_ATTEMPTS = 3;
/** After a lost connection, how long XAPI's task may take to say why before the pool is called unreachable. */
const TASK_VERDICT_GRACE_MS = 3_000;
/** Redirections followed to find the host of an upload (a pool sends a member's local SR to that member: one hop). */
const MAX_REDIRECTS = 3;
/** The longest a probe may take to be answered (XAPI answers it at once: it checks the credentials and the SR). */
const PROBE_TIMEOUT_MS = 30_000;

/**
 * The pool's redirections left the upload nowhere to go: more than {@link MAX_REDIRECTS} of them, or a 302 to the body itself
 * (the SR moved after the probe: the body is partly sent and cannot be re-sent). XAPI keeps the task pending for a host that
 * will never see this upload, so it is cancelled rather than waited for.
 */
export class UploadRedirectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UploadRedirectedError";
  }
}

function hostOf(location: string): string {
  try {
    return new URL(location).host;
  } catch {
    return location || "an unnamed host";
  }
}

/**
 * Finds the host that takes an upload, as xen-api's putResource does before it reads a stream: an empty PUT without
 * `task_id` (XAPI checks the credentials and whether this host sees the SR, and answers 302 to one that does: the member
 * holding a local SR, import_raw_vdi.ml / import.ml `return_302_redirect`), following at most {@link MAX_REDIRECTS}
 * redirections. Only the redirection matters: any other answer means "send it here" (the empty import a host may start
 * for the probe fails a task of its own, as with xen-api's and so Xen Orchestra's uploads). Only multi-host pools are
 * probed. A probe that cannot connect is tried again, as the upload itself would be.
 * @returns the URL to PUT the body to (the original query, task_id included).
 */
async function locateUpload(connection: PoolConnection, url: URL): Promise<URL> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const probe = new URL(current);
    probe.searchParams.delete("task_id");
    let answer: { status: number; location?: string } | undefined;
    for (let attempt = 1; answer === undefined; attempt++) {
      try {
        answer = await probeOnce(connection, probe);
      } catch (error) {
        if (!isNetworkError(error) || attempt >= CONNECT_ATTEMPTS) throw isNetworkError(error) ? connection.unreachable(error) : error;
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
      }
    }
    if (answer.status !== 302 || answer.location === undefined) return current;
    if (hop >= MAX_REDIRECTS) {
      throw new UploadRedirectedError(
        `the pool redirected the upload more than ${MAX_REDIRECTS} times (last to ${hostOf(answer.location)}): nothing was sent`,
      );
    }
    const next = new URL(answer.location, current);
    // XAPI's Location repeats the query it was given; the task and session are ours in any case.
    for (const key of ["session_id", "task_id"]) {
      const value = url.searchParams.get(key);
      if (value !== null) next.searchParams.set(key, value);
    }
    current = next;
  }
}

function probeOnce(connection: PoolConnection, url: URL): Promise<{ status: number; location?: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === "https:" ? https : http).request(url, {
      method: "PUT",
      agent: false,
      headers: { "content-length": "0" },
      timeout: PROBE_TIMEOUT_MS,
      ...(url.protocol === "https:" ? PINNING_TLS_OPTIONS : {}),
    });
    request.once("error", reject);
    request.once("timeout", () =>
      request.destroy(Object.assign(new Error("no answer to the upload probe in time"), { code: "ETIMEDOUT" })),
    );
    request.once("response", (response) => {
      response.resume();
      resolve({ status: response.statusCode ?? 0, location: response.headers.location });
      request.destroy();
    });
    request.once("socket", (socket) => {
      if (url.protocol !== "https:") return void request.end();
      // The probe carries the session: it is sent only to a host whose certificate passes, as every call.
      socket.once("secureConnect", () => {
        const refused = certificateRefusal(socket as TLSSocket, connection.tlsTrust, connection.displayName);
        if (refused) {
          request.destroy();
          reject(refused);
          return;
        }
        request.end();
      });
    });
  });
}

/**
 * Resolves with XAPI's task result (the import's answer); rejects with XAPI's error when the task fails, or with
 * {@link PoolUnreachableError} when the connection to the host is lost and the task says nothing in time. The body is piped
 * only once the connection is up: an upload that could not connect has read nothing and is tried again (same task); once
 * body bytes were sent it is not (the body cannot be read twice: the caller's job retries decide).
 */
export async function putWithTask(
  connection: PoolConnection,
  body: Readable & { length?: number },
  path: string,
  query: Record<string, string>,
  taskRef: string,
): Promise<unknown> {
  const xapi = connection.xapi as unknown as TaskClient;
  const result = xapi.watchTask(taskRef);
  result.catch(() => undefined); // awaited below
  const asked = new URL(path, connection.baseUrl);
  for (const [key, value] of Object.entries({ ...query, session_id: xapi.sessionId, task_id: taskRef })) asked.searchParams.set(key, value);
  // A redirecting host leaves the task pending for the host it names: the body must go there, or the task waits forever.
  // One host sees every SR: nothing to look for (and no empty import started on the host for a probe).
  const url = connection.records("host").length > 1 ? await locateUpload(connection, asked) : asked;
  let request: http.ClientRequest | undefined;
  let lost!: (error: unknown) => void;
  const connectionLost = new Promise<never>((_, reject) => (lost = reject));
  connectionLost.catch(() => undefined); // raced below
  let redirected!: (error: UploadRedirectedError) => void;
  const movedAway = new Promise<never>((_, reject) => (redirected = reject));
  movedAway.catch(() => undefined); // raced below
  const send = (attempt: number) => {
    const current = (url.protocol === "https:" ? https : http).request(url, {
      method: "PUT",
      agent: false,
      headers: { "content-length": body.length !== undefined ? String(body.length) : UNKNOWN_LENGTH },
      ...(url.protocol === "https:" ? PINNING_TLS_OPTIONS : {}),
    });
    request = current;
    let piped = false;
    current.once("socket", (socket) => {
      socket.once(url.protocol === "https:" ? "secureConnect" : "connect", () => {
        if (request !== current) return;
        const refused =
          url.protocol === "https:" ? certificateRefusal(socket as TLSSocket, connection.tlsTrust, connection.displayName) : undefined;
        if (refused) {
          lost(refused);
          current.destroy();
          return;
        }
        piped = true;
        // A broken body (a cancel, a failed source) cuts the request: XAPI then fails its task, which is what we wait for.
        body.once("error", (error) => current.destroy(error));
        body.pipe(current);
      });
    });
    current.once("error", (error) => {
      if (request !== current || !isNetworkError(error)) return; // a body's own error is reported through XAPI's task
      if (!piped && attempt < CONNECT_ATTEMPTS) {
        setTimeout(() => send(attempt + 1), 1000 * attempt).unref();
        return;
      }
      lost(error);
    });
    current.once("response", (response) => {
      response.resume();
      if (response.statusCode === 302 && request === current) {
        // Moved between the probe and now: what was sent is lost, and XAPI keeps the task pending for the other host.
        const to = hostOf(String(response.headers.location ?? ""));
        redirected(
          new UploadRedirectedError(
            `the pool sent the upload to another host (${to}) after it had started; nothing was imported: try again`,
          ),
        );
        current.destroy();
      }
    });
    if (body.length === undefined) {
      // With the 1 PiB convention the end of the data is the end of the stream: half-close (FIN) so XAPI sees it, while
      // still reading its answer (reading is what avoids the reset that would drop our last bytes).
      current.once("finish", () => current.socket?.end());
    }
  };
  send(1);
  try {
    // XAPI's task ends when the import is complete or has failed (also when the upload broke): its result decides.
    return await Promise.race([
      result,
      movedAway,
      connectionLost.catch(async (error) => {
        // A host that is up fails the task at once when its upload breaks, with the better reason: give it a moment.
        let timer: NodeJS.Timeout | undefined;
        const verdict = await Promise.race([
          result.then(
            (value) => ({ value }),
            (failure) => ({ failure }),
          ),
          new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), TASK_VERDICT_GRACE_MS))),
        ]);
        clearTimeout(timer);
        if (verdict === undefined) throw connection.unreachable(error);
        if ("failure" in verdict) throw verdict.failure;
        return verdict.value;
      }),
    ]);
  } finally {
    request?.destroy();
  }
}

/** How long a cancelled upload may take to end on the host (XAPI undoes what it created) before we stop waiting. */
const CANCEL_SETTLE_MS = 10_000;

export interface CancellableUpload {
  /** The upload's target: "/import/", "/import_raw_vdi/". */
  path: string;
  query: Record<string, string>;
  /** What is sent; its `length`, when set, is the Content-Length (else XAPI's 1 PiB convention). */
  body: Readable & { length?: number };
  /** The stream `body` reads from, when it is not `body` itself: destroyed too on a stop. */
  source?: Readable;
  /** Name and description of XAPI's task. */
  taskName: string;
  taskDescription: string;
  /** What the upload is, for the error of a failed task: "import" gives "XAPI's import failed: <XAPI's error>". */
  what: string;
  /** The text of the error a stop leaves: `${stoppedPrefix}: <the signal's reason>`. */
  stoppedPrefix: string;
  signal: AbortSignal;
  /** Called with XAPI's task as soon as it exists (before the upload starts). */
  onTask?(taskRef: string): void;
}

/**
 * The one cancellable upload to XAPI (an /import, an /import_raw_vdi): a XAPI task of our own, then {@link putWithTask}. A
 * stop (the signal) or a failing body (a damaged backup, a cut fork: it can fail at its very first byte, before the upload
 * reached XAPI, and XAPI's task would wait forever for a body) destroys the body and cancels XAPI's task, so the host stops
 * and discards what it created; then the call waits (bounded) for XAPI's task to end, so the caller sees the pool without the
 * half-imported object. @returns XAPI's task result.
 */
export async function cancellableUpload(connection: PoolConnection, upload: CancellableUpload): Promise<unknown> {
  const { body, signal } = upload;
  const xapi = connection.xapi as unknown as TaskClient & {
    createTask(name: string, description?: string): Promise<string>;
    call(method: string, ...args: unknown[]): Promise<unknown>;
  };
  let failSource!: (error: Error) => void;
  let sourceError: Error | undefined;
  const sourceFailure = new Promise<never>((_, reject) => (failSource = reject));
  sourceFailure.catch(() => undefined); // raced below; rejected only when the body fails
  const onBodyError = (error: Error) => {
    sourceError ??= error;
    failSource(error);
  };
  body.on("error", onBodyError);

  const taskRef = await xapi.createTask(upload.taskName, upload.taskDescription);
  const cancelTask = () =>
    xapi.call("task.cancel", taskRef).catch(() => {
      // Already ended, or not cancellable: the upload is cut anyway, and XAPI's task result (awaited below) decides.
    });
  sourceFailure.catch(cancelTask);
  upload.onTask?.(taskRef);
  let stop!: (reason: Error) => void;
  const stopped = new Promise<never>((_, reject) => (stop = reject));
  stopped.catch(() => undefined); // raced below; rejected only on a stop
  const onAbort = () => {
    const reason = new Error(`${upload.stoppedPrefix}: ${String(signal.reason ?? "cancelled")}`);
    upload.source?.destroy(reason);
    body.destroy(reason);
    void cancelTask();
    stop(reason);
  };
  if (signal.aborted) onAbort();
  signal.addEventListener("abort", onAbort, { once: true });
  const uploaded = putWithTask(connection, body, upload.path, upload.query, taskRef);
  uploaded.catch(() => undefined); // raced below, then waited for after a stop: its rejection is expected there
  try {
    return await Promise.race([uploaded, stopped, sourceFailure]);
  } catch (error) {
    if (signal.aborted || sourceError !== undefined) {
      // XAPI undoes a cancelled upload, but on its own time: wait (bounded) for its task to end before saying we stopped.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        uploaded.catch(() => undefined /* the stop or the source's error is what is reported */),
        new Promise((resolve) => (timer = setTimeout(resolve, CANCEL_SETTLE_MS))),
      ]);
      clearTimeout(timer);
      throw signal.aborted ? error : sourceError;
    }
    if (error instanceof PoolUnreachableError) {
      void cancelTask(); // the host may still be working on what it received; when it is back it stops and undoes it
      throw error;
    }
    if (error instanceof UploadRedirectedError) {
      void cancelTask(); // XAPI keeps it pending for the host it named, which will never see this upload
      throw error;
    }
    if (error instanceof CertificateRefusedError) {
      void cancelTask(); // nothing was sent to the host that presented it: the task would wait for a body forever
      throw error;
    }
    throw new Error(`XAPI's ${upload.what} failed: ${describeXapiError(error)}`, { cause: error });
  } finally {
    // The body's error listener stays: a late error of a destroyed body must find a listener (none would crash the process).
    signal.removeEventListener("abort", onAbort);
  }
}
