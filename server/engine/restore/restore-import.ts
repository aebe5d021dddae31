/**
 * Uploads an XVA stream into a pool with `PUT /import/?sr_id=<SR ref>` and answers the new VM refs. Nothing is copied to a
 * temporary file: the stream goes from its source (a remote's file, or an XVA synthesized from VHD chains) to XAPI with
 * backpressure, through a byte meter for progress. The upload is xapi/put-with-task.ts's {@link cancellableUpload}:
 * cancelling (the run's signal) destroys the source and cancels XAPI's import task, so the host stops and discards what it
 * created; the call returns once XAPI's task has ended (bounded), so the caller sees the pool without the half-imported VM.
 *
 * With `runId`, each VM the import creates is marked with it as soon as it exists (xapi/import-marker.ts), so that what a
 * process killed mid-import leaves is found by the interrupted-run cleanup.
 */
import type { Readable } from "node:stream";
import { cancellableUpload } from "../../xapi/put-with-task.js";
import type { PoolConnection } from "../../xapi/pool-connection.js";
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

/** @returns the refs of the VMs XAPI created (one for a VM export). */
export async function importXva(options: ImportXvaOptions): Promise<{ vmRefs: string[]; bytes: number }> {
  const { connection, task } = options;
  const meter = byteMeter((bytes, delta) => {
    task.progress(options.expectedBytes > 0 ? Math.min(0.99, bytes / options.expectedBytes) : 0, bytes);
    options.onBytes(delta);
  });
  // A failing source fails the meter, which is what the upload watches.
  options.body.on("error", (error) => meter.destroy(error));
  const upload = options.body.pipe(meter) as Readable & { length?: number };
  if (options.length !== undefined) upload.length = options.length;
  let marker: ImportMarker | undefined;
  try {
    const result = await cancellableUpload(connection, {
      path: "/import/",
      query: { sr_id: options.srRef },
      body: upload,
      source: options.body,
      taskName: "Cairn restore",
      taskDescription: "import of a restore point",
      what: "import",
      stoppedPrefix: "restore stopped",
      signal: options.signal,
      onTask: (taskRef) => {
        if (options.runId) marker = markImportedVms(connection, taskRef, options.runId, options.onVmCreated);
      },
    });
    const vmRefs = refsOf(result);
    if (vmRefs.length === 0)
      throw new Error(`XAPI's import ended without naming the VM it created (result ${JSON.stringify(result)?.slice(0, 200)})`);
    const problems = (await marker?.stop()) ?? [];
    if (problems.length > 0)
      await task.warn(
        `the imported VM could not be marked with its run (${problems.join("; ")}): had Cairn stopped before the end, it would have been left behind`,
      );
    return { vmRefs, bytes: meter.bytes };
  } finally {
    await marker?.stop(); // idempotent; after a failure, a VM XAPI undid could not be marked: nothing to say
  }
}

/** XAPI answers the created VMs as an XML-RPC array (a string) or, decoded, an array of refs. */
function refsOf(result: unknown): string[] {
  const text = typeof result === "string" ? result : JSON.stringify(result ?? "");
  return [...new Set(text.match(/OpaqueRef:[A-Za-z0-9-]+/g) ?? [])].filter((ref) => ref !== "OpaqueRef:NULL");
}
