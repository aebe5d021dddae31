import { XapiFailure } from "./xapi-failure.js";

/** The faults `lab.set_fault(session, name, params)` accepts; see server/lab/README.md. */
export const FAULT_NAMES = [
  "export_drop_after_bytes",
  "export_bytes_per_second",
  "import_bytes_per_second",
  "snapshot_fails",
  "quiesce",
  "host_unreachable",
  "boot_fails",
  "events_lost",
  "session_invalid",
  "cbt_reset",
  "nbd_drop_after_bytes",
] as const;
export type FaultName = (typeof FAULT_NAMES)[number];

export type QuiesceMode = "removed" | "not_supported" | "works";

export interface FaultState {
  /** Every export (XVA or raw/VHD) is cut after this many body bytes. */
  exportDropAfterBytes?: number;
  /** Every export body is sent at most this fast. */
  exportBytesPerSecond?: number;
  /** Every import body (`/import`, `/import_raw_vdi`) is read at most this fast. */
  importBytesPerSecond?: number;
  /** How many next VM/VDI snapshots fail, and with which error. */
  snapshotFailures?: { remaining: number; code: string };
  quiesce: QuiesceMode;
  /** Epoch ms until which the host drops every connection. */
  unreachableUntil?: number;
  /** How many next VM.start calls fail (Infinity: until cleared). */
  bootFailures?: number;
  /** The next event.from answers EVENTS_LOST. */
  eventsLost?: boolean;
  /** Every NBD connection is cut after serving this many bytes of read data. */
  nbdDropAfterBytes?: number;
}

type Params = Record<string, unknown>;

function positiveNumber(name: FaultName, params: Params, key: string, fallback?: number): number {
  const value = params[key] ?? fallback;
  const number = typeof value === "string" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isFinite(number) || number < 0) {
    throw new XapiFailure("INVALID_VALUE", [`${name}.${key}`, String(value)]);
  }
  return number;
}

/** The lab's injected faults; all off until set, all off again after `clear()`. */
export class Faults {
  state: FaultState = { quiesce: "removed" };

  /** Applies `lab.set_fault`: unknown names or bad params give `INVALID_VALUE [what, value]`. */
  set(name: string, params: unknown): void {
    const p: Params = typeof params === "object" && params !== null ? (params as Params) : {};
    switch (name as FaultName) {
      case "export_drop_after_bytes":
        this.state.exportDropAfterBytes = positiveNumber(name as FaultName, p, "bytes");
        return;
      case "export_bytes_per_second":
        this.state.exportBytesPerSecond = Math.max(1, positiveNumber(name as FaultName, p, "rate"));
        return;
      case "import_bytes_per_second":
        this.state.importBytesPerSecond = Math.max(1, positiveNumber(name as FaultName, p, "rate"));
        return;
      case "snapshot_fails":
        this.state.snapshotFailures = {
          remaining: positiveNumber(name as FaultName, p, "count", 1),
          code: typeof p.code === "string" ? p.code : "SR_BACKEND_FAILURE_44",
        };
        return;
      case "quiesce": {
        const mode = p.mode;
        if (mode !== "removed" && mode !== "not_supported" && mode !== "works") {
          throw new XapiFailure("INVALID_VALUE", ["quiesce.mode", String(mode)]);
        }
        this.state.quiesce = mode;
        return;
      }
      case "host_unreachable":
        this.state.unreachableUntil = Date.now() + positiveNumber(name as FaultName, p, "seconds") * 1000;
        return;
      case "boot_fails":
        this.state.bootFailures = p.count === undefined ? Infinity : positiveNumber(name as FaultName, p, "count");
        return;
      case "events_lost":
        this.state.eventsLost = true;
        return;
      case "session_invalid":
      case "cbt_reset":
        // One-shot, applied by the caller: every session is dropped at once / every CBT chain restarts.
        return;
      case "nbd_drop_after_bytes":
        this.state.nbdDropAfterBytes = positiveNumber(name as FaultName, p, "bytes");
        return;
      default:
        throw new XapiFailure("INVALID_VALUE", ["fault name", `${name} (known: ${FAULT_NAMES.join(", ")})`]);
    }
  }

  clear(): void {
    this.state = { quiesce: "removed" };
  }

  /** Throws the configured failure once per remaining count, for `VM.snapshot` and `VDI.snapshot`. */
  takeSnapshotFailure(subject: string): void {
    const failures = this.state.snapshotFailures;
    if (failures === undefined || failures.remaining <= 0) return;
    failures.remaining--;
    if (failures.remaining <= 0) this.state.snapshotFailures = undefined;
    throw new XapiFailure(failures.code, ["lab fault snapshot_fails", subject]);
  }

  takeBootFailure(vm: string): void {
    const remaining = this.state.bootFailures;
    if (remaining === undefined || remaining <= 0) return;
    this.state.bootFailures = remaining - 1;
    throw new XapiFailure("BOOTLOADER_FAILED", [vm, "lab fault boot_fails"]);
  }

  takeEventsLost(): boolean {
    const lost = this.state.eventsLost === true;
    this.state.eventsLost = undefined;
    return lost;
  }

  isUnreachable(now = Date.now()): boolean {
    return this.state.unreachableUntil !== undefined && now < this.state.unreachableUntil;
  }
}
