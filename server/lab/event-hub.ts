import { classByLowerName, XAPI_CLASSES } from "./class-defaults.js";
import type { Faults } from "./faults.js";
import type { ObjectStore } from "./object-store.js";
import type { Sessions } from "./sessions.js";
import { XapiFailure } from "./xapi-failure.js";

export interface XapiEvent {
  id: string;
  timestamp: string;
  class: string;
  operation: "add" | "mod" | "del";
  ref: string;
  snapshot?: Record<string, unknown>;
}

export interface EventFromResult {
  events: XapiEvent[];
  valid_ref_counts: Record<string, number>;
  token: string;
}

interface Waiter {
  session: string;
  check: () => boolean;
  fail: (error: XapiFailure) => void;
}

/** `%020d,%020d`: XAPI's token (object generation, message generation). */
export function formatToken(generation: number): string {
  return `${String(generation).padStart(20, "0")},${"0".padStart(20, "0")}`;
}

function parseToken(token: unknown): number {
  if (token === "") return 0;
  const match = typeof token === "string" ? /^(\d+),(\d+)$/.exec(token) : null;
  if (match === null) throw new XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", [String(token)]);
  return Number(match[1]);
}

const MAX_WAIT_SECONDS = 600;

/**
 * `event.inject` and `event.from` (`xapi_event.ml`): state-based, coalesced per object (add, mod or del
 * relative to the token; created-and-deleted inside the window is not reported), blocking until a change
 * or the timeout, always with `valid_ref_counts.task` (the client re-fetches tasks when it differs).
 */
export class EventHub {
  private readonly waiters = new Set<Waiter>();
  private closed = false;
  /**
   * The longest an `event.from` waits when nothing happens, whatever timeout the client asked (the lab option
   * `eventFromMaxWaitMs`): tests hold the long poll near the client's HTTP limits in milliseconds instead of a minute.
   */
  maxWaitMs: number | undefined;
  /** How many `event.from` calls ended by their timeout with nothing to report (idle long polls served). */
  idlePollsAnswered = 0;

  constructor(
    private readonly store: ObjectStore,
    sessions: Sessions,
    private readonly faults: Faults,
  ) {
    store.on("change", () => this.wake());
    sessions.onLogout((session) => {
      for (const waiter of [...this.waiters]) {
        if (waiter.session === session) waiter.fail(new XapiFailure("SESSION_INVALID", [session]));
      }
    });
  }

  inject(cls: unknown, ref: unknown): string {
    const name = classByLowerName(String(cls));
    if (name === undefined) throw new XapiFailure("HANDLE_INVALID", [String(cls), String(ref)]);
    this.store.update(name, ref, () => {});
    return formatToken(this.store.generation);
  }

  from(session: string, classes: unknown, token: unknown, timeout: unknown): Promise<EventFromResult> {
    const since = parseToken(token);
    if (this.faults.takeEventsLost() || since < this.store.oldestAnswerable) {
      return Promise.reject(new XapiFailure("EVENTS_LOST", []));
    }
    const matches = this.matcher(classes);
    const seconds = Math.min(MAX_WAIT_SECONDS, Math.max(0, Number(timeout) || 0));
    const immediate = this.collect(since, matches);
    if (immediate.events.length > 0 || seconds === 0 || this.closed) return Promise.resolve(immediate);

    return new Promise<EventFromResult>((resolve, reject) => {
      const finish = (result: EventFromResult | XapiFailure) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        if (result instanceof XapiFailure) reject(result);
        else resolve(result);
      };
      const waiter: Waiter = {
        session,
        check: () => {
          const result = this.collect(since, matches);
          if (result.events.length === 0 && !this.closed) return false;
          finish(result);
          return true;
        },
        fail: (error) => finish(error),
      };
      const waitMs = Math.min(seconds * 1000, this.maxWaitMs ?? Number.POSITIVE_INFINITY);
      const timer = setTimeout(() => {
        const result = this.collect(since, matches);
        if (result.events.length === 0) this.idlePollsAnswered++;
        finish(result);
      }, waitMs);
      this.waiters.add(waiter);
    });
  }

  /** Answers every waiting `event.from` now (the lab is stopping). */
  close(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter.check();
  }

  private matcher(classes: unknown): (cls: string, ref: string) => boolean {
    if (!Array.isArray(classes)) throw new XapiFailure("FIELD_TYPE_ERROR", ["classes"]);
    const names = new Set<string>();
    const refs = new Set<string>();
    for (const item of classes) {
      const text = String(item).toLowerCase();
      const slash = text.indexOf("/");
      if (slash === -1) names.add(text);
      else refs.add(`${text.slice(0, slash)}/${String(item).slice(slash + 1)}`);
    }
    return (cls, ref) => names.has("*") || names.has(cls) || refs.has(`${cls}/${ref}`);
  }

  private collect(since: number, matches: (cls: string, ref: string) => boolean): EventFromResult {
    const { live, deleted } = this.store.changesSince(since);
    const events: XapiEvent[] = [];
    for (const object of live) {
      const cls = object.cls.toLowerCase();
      if (!matches(cls, object.ref)) continue;
      events.push({
        id: String(object.modified),
        timestamp: (Date.now() / 1000).toFixed(6),
        class: cls,
        operation: object.created > since ? "add" : "mod",
        ref: object.ref,
        snapshot: structuredClone(object.record),
      });
    }
    for (const tomb of deleted) {
      const cls = tomb.cls.toLowerCase();
      if (!matches(cls, tomb.ref)) continue;
      events.push({ id: String(tomb.deleted), timestamp: (Date.now() / 1000).toFixed(6), class: cls, operation: "del", ref: tomb.ref });
    }
    events.sort((a, b) => Number(a.id) - Number(b.id));
    const counts: Record<string, number> = {};
    for (const cls of XAPI_CLASSES) counts[cls.toLowerCase()] = this.store.count(cls);
    return { events, valid_ref_counts: counts, token: formatToken(this.store.generation) };
  }
}
