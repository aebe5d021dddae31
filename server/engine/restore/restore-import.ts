/**
 * Uploads an XVA stream into a pool with `PUT /import/?sr_id=<SR ref>` and answers the new VM refs. Nothing is copied to a
 * temporary file: the stream goes from its source (a remote's file, or an XVA synthesized from VHD chains) to XAPI with
 * backpressure, through a byte meter for progress. Cancelling (the run's signal) destroys the source and cancels XAPI's
 * import task, so the host stops and discards what it created (XAPI's import undoes itself on a premature end); the call
 * returns once XAPI's task has ended (bounded), so the caller sees the pool without the half-imported VM.
 *
 * With `runId`, each VM the import creates is marked with it as soon as it exists (xapi/import-marker.ts), so that what a
 * process killed mid-import leaves is found by the interrupted-run cleanup.
 */
import type { Readable } from "node:stream";
import { putWithTask } from "../../xapi/put-with-task.js";
import type { Xapi } from "xen-api";
import type { PoolConnection } from "../../xapi/pool-connection.js";
import { describeXapiError } from "../../xapi/pool-connection.js";
import { markImportedVms, type ImportMarker } from "../../xapi/import-marker.js";
import { byteMeter } from "../../streams/byte-meter.js";
import type { TaskContext } from "../task-context.js";

export interface ImportXvaOptions {
  connection: PoolConnection;
  srRef: string;
  body: Readable;
  /** The body's exact length when known (a file): sent as Content-Length. Unknown: XAPI's 1 PiB Content-Length convention. */
  length?: number;
  /** For progress: the bytes expected (the file's size, or an estimate). */
  expectedBytes: number;
  task: TaskContext;
  signal: AbortSignal;
  /** Bytes sent so far, as they go. */
  onBytes(delta: number): void;
  /** The importing run: marks the VMs the import creates ({@link OtherConfigKey.ImportRun}) as soon as they exist. */
  runId?: string;
  /** Called with each VM ref XAPI creates, as soon as it shows (before the import ends), so a failure can remove it. */
  onVmCreated?(ref: string): void;
}

/** How long a cancelled import may take to end on the host (XAPI undoes what it created) before we stop waiting. */
const CANCEL_SETTLE_MS = 10_000;

/** @returns the refs of the VMs XAPI created (one for a VM export). */
export async function importXva(options: ImportXvaOptions): Promise<{ vmRefs: string[]; bytes: number }> {
  const { connection, task, signal } = options;
  const xapi = connection.xapi as unknown as Xapi;
  const meter = byteMeter((bytes, delta) => {
    task.progress(options.expectedBytes > 0 ? Math.min(0.99, bytes / options.expectedBytes) : 0, bytes);
    options.onBytes(delta);
  });
  // A failing source (a damaged backup, a remote gone) can fail at its very first byte, before the upload has even reached
  // XAPI: then XAPI's task would wait for a body that never comes. So the failure is caught from the first moment, stops
  // the upload, and cancels the task.
  let sourceFailed!: (error: Error) => void;
  let sourceError: Error | undefined;
  const sourceFailure = new Promise<never>((_, reject) => (sourceFailed = reject));
  sourceFailure.catch(() => undefined);
  options.body.on("error", (error) => meter.destroy(error));
  meter.on("error", (error) => {
    sourceError ??= error;
    sourceFailed(error);
  });
  const upload = options.body.pipe(meter) as Readable & { length?: number };
  if (options.length !== undefined) upload.length = options.length;

  const taskRef = await xapi.createTask("Cairn restore", "import of a restore point");
  sourceFailure.catch(() => xapi.call("task.cancel", taskRef).catch(() => undefined));
  const marker: ImportMarker | undefined = options.runId ? markImportedVms(connection, taskRef, options.runId, options.onVmCreated) : undefined;
  let aborted: ((reason: Error) => void) | undefined;
  const abortedPromise = new Promise<never>((_, reject) => (aborted = reject));
  abortedPromise.catch(() => undefined);
  const onAbort = () => {
    const reason = new Error(`restore stopped: ${String(signal.reason ?? "cancelled")}`);
    options.body.destroy(reason);
    meter.destroy(reason);
    xapi.call("task.cancel", taskRef).catch(() => undefined); // the task may be done or not cancellable: the upload is cut anyway
    aborted!(reason);
  };
  if (signal.aborted) onAbort();
  signal.addEventListener("abort", onAbort, { once: true });
  const uploaded = putWithTask(connection, upload, "/import/", { sr_id: options.srRef }, taskRef);
  uploaded.catch(() => undefined); // awaited below (raced with the cancel, then waited for after it)
  try {
    const result = await Promise.race([uploaded, abortedPromise, sourceFailure]);
    const vmRefs = refsOf(result);
    if (vmRefs.length === 0) throw new Error(`XAPI's import ended without naming the VM it created (result ${JSON.stringify(result)?.slice(0, 200)})`);
    const problems = (await marker?.stop()) ?? [];
    if (problems.length > 0) await task.warn(`the imported VM could not be marked with its run (${problems.join("; ")}): had Cairn stopped before the end, it would have been left behind`);
    return { vmRefs, bytes: meter.bytes };
  } catch (error) {
    if (signal.aborted || sourceError !== undefined) {
      // XAPI undoes a cancelled import, but on its own time: wait (bounded) for its task to end before saying we stopped.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([uploaded.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, CANCEL_SETTLE_MS)))]);
      clearTimeout(timer);
      throw signal.aborted ? error : sourceError;
    }
    throw new Error(`XAPI's import failed: ${describeXapiError(error)}`, { cause: error });
  } finally {
    signal.removeEventListener("abort", onAbort);
    await marker?.stop(); // idempotent; after a failure, a VM XAPI undid could not be marked: nothing to say
  }
}

/** XAPI answers the created VMs as an XML-RPC array (a string) or, decoded, an array of refs. */
function refsOf(result: unknown): string[] {
  const text = typeof result === "string" ? result : JSON.stringify(result ?? "");
  return [...new Set(text.match(/OpaqueRef:[A-Za-z0-9-]+/g) ?? [])].filter((ref) => ref !== "OpaqueRef:NULL");
}
