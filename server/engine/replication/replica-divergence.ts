/**
 * Has a CR replica been written since its last update? The signal works on a real pool, not only in the lab: after each
 * update Cairn snapshots the replica, so its disks must equal that replica snapshot's disks. XAPI computes the difference
 * itself: `GET /export_raw_vdi?vdi=<replica disk>&format=vhd&base=<its disk in the last replica snapshot>` is a differencing
 * VHD holding exactly the blocks written since (on a real SR, from the VHD chain: the leaf's allocated blocks). Any block
 * with data means someone booted the replica or attached its disk elsewhere. An unchanged disk costs a header and a BAT.
 */
import { settledWithin } from "../concurrency.js";
import { parseVhdStream } from "../../formats/vhd/index.js";
import type { VmDisk } from "../../xapi/vm-operations.js";
import { DeltaImpossibleError, deltaImpossibleReason, type ReplicaOperations } from "../../xapi/replica-operations.js";

// XAPI cannot export a difference of this disk at all: the replica can be neither checked nor take deltas.
export { DeltaImpossibleError };

/** How long a failed difference export waits for XAPI's task to say why (XAPI fails it before it closes the body). */
export const EXPORT_VERDICT_WAIT_MS = 10_000;

/** @returns the name of the first replica disk written since the snapshot, or undefined when none was. */
export async function writtenReplicaDisk(
  replicas: ReplicaOperations,
  pairs: { replica: VmDisk; snapshot: VmDisk }[],
  signal: AbortSignal,
): Promise<string | undefined> {
  for (const pair of pairs) {
    const { body, done } = await replicas.ops.exportVhd(pair.replica.vdiRef, pair.snapshot.vdiRef);
    const onAbort = () => body.destroy(new Error(`stopped: ${String(signal.reason ?? "cancelled")}`));
    signal.addEventListener("abort", onAbort, { once: true });
    let written = false;
    // XAPI refuses some differences only after its 200 (an empty body, then its task fails): its verdict says why.
    const verdict = done.then(
      () => undefined,
      (error: unknown) => error,
    );
    try {
      try {
        for await (const item of parseVhdStream(body, `difference of replica disk ${pair.replica.name}`)) {
          if (item.kind === "block" && item.bitmap.some((byte) => byte !== 0)) {
            written = true;
            body.destroy();
            break;
          }
        }
      } catch (error) {
        const reason = deltaImpossibleReason(
          await settledWithin(verdict, EXPORT_VERDICT_WAIT_MS),
          pair.replica.name || pair.replica.userdevice,
        );
        throw reason === undefined ? error : new DeltaImpossibleError(reason);
      }
      if (!written) await done;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    if (written) return pair.replica.name || pair.replica.userdevice;
  }
  return undefined;
}
