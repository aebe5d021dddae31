/**
 * The jobs and remotes lists, answered from memory while they are known to be current. The jobs list alone is three queries
 * (jobs, their remotes, their schedules) and the remotes list a fourth: on a dashboard or a script polling `{ jobs }`, that
 * was most of a request's cost, for rows that change a few times a day.
 *
 * Exact, not eventually right, as AuthService's credential cache: every change to Job, Schedule, JobRemote or Remote, by any
 * process or by hand, sends a notification (migration configuration_notify) that drops everything, and before a cached list
 * is used the event bus makes sure every notification committed before the request arrived has been handed over
 * (`syncNotices`: one round trip on its LISTEN connection, shared by the requests under way and with the token check). When
 * that cannot be known (LISTEN lost, or no bus), the database is read.
 *
 * Cached values are frozen: they are shared by every request, and a caller that changed one would change them all.
 */
import type { EventBus } from "../events/event-bus.js";

export type ConfigurationNotices = Pick<EventBus, "onConfigurationNotice" | "syncNotices">;

export class ConfigurationCache {
  private readonly entries = new Map<string, unknown>();
  /**
   * Loads under way, by key, with when each began: a request that arrived before a load began gets that load's answer
   * (the rows it reads were committed at or after its start, so they hold every change the request must see) instead of
   * starting its own. Twenty dashboards asking right after a change cost one query, not twenty.
   */
  private readonly loading = new Map<string, { startedAt: number; value: Promise<unknown> }>();
  /** Bumped whenever the entries are dropped: a load that began before may have read old rows and must not be kept. */
  private generation = 0;

  constructor(private readonly notices?: ConfigurationNotices) {
    notices?.onConfigurationNotice(() => this.drop());
  }

  /**
   * What `load` gives, as of `asOf` (a `performance.now()` reading, by default now: the answer holds every change committed
   * before it): from memory when no change came since it was loaded, else loaded (and kept).
   */
  async read<T>(key: string, load: () => Promise<T>, asOf: number = performance.now()): Promise<T> {
    if (!this.notices) return load();
    const cached = this.entries.get(key) as T | undefined;
    if (cached !== undefined && (await this.notices.syncNotices(asOf)) && this.entries.get(key) === cached) return cached;
    const pending = this.loading.get(key);
    if (pending && pending.startedAt >= asOf) return pending.value as Promise<T>;
    const generation = this.generation;
    const startedAt = performance.now();
    const value = load().then((rows) => {
      const frozen = deepFreeze(rows);
      if (generation === this.generation) this.entries.set(key, frozen);
      return frozen;
    });
    this.loading.set(key, { startedAt, value });
    const forget = () => {
      if (this.loading.get(key)?.value === value) this.loading.delete(key);
    };
    value.then(forget, forget);
    return value;
  }

  /** Forgets every list (a change was announced, or notices may have been missed). */
  drop() {
    this.entries.clear();
    this.loading.clear();
    this.generation++;
  }
}

function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== "object" || Object.isFrozen(value) || ArrayBuffer.isView(value)) return value;
  // A Date's time can be set through its methods whatever Object.freeze says; nothing here does.
  for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  return Object.freeze(value);
}
