/**
 * Whether the Cairn server can be reached, as the dashboard finds out: a request that gets no answer (network error, the
 * server down, a proxy's 502/503/504) makes it unreachable; then it is asked again with a backoff (1 s doubling up to
 * 15 s, at once when the browser says it is online again or a person clicks "Retry now") until it answers. Its comeback
 * is what queries waiting for it, resources (they reload) and the live updates' socket (it reconnects) wait for.
 *
 * Plain TypeScript, not runes: the API client and the graphql-ws client read it, and they also run in Node tests.
 * Inert until something {@link ConnectionMonitor.watch | watches} (the signed-in layout's banner): without a watcher,
 * nothing asks the server again, and requests fail as they always did.
 */

export interface ConnectionState {
  /** False from a request that got no answer until the server answers again. */
  reachable: boolean;
  /** When the server last answered: what the page shows was loaded by then. Null before its first answer. */
  lastAnswerAt: Date | null;
  /** The server is being asked right now. */
  checking: boolean;
  /** When it is asked next, while it cannot be reached. */
  nextAttemptAt: Date | null;
}

/** Asks the server whether it answers; resolves true when it does, never rejects. */
export type Probe = () => Promise<boolean>;

/** Where the monitor listens for the browser's `online` / `offline` events (a `window`). */
export interface ConnectionHost {
  addEventListener(type: "online" | "offline", listener: () => void): void;
  removeEventListener(type: "online" | "offline", listener: () => void): void;
}

/** What a proxy in front of Cairn answers when Cairn is down or too slow. */
export const GATEWAY_FAILURES: ReadonlySet<number> = new Set([502, 503, 504]);

/** The wait before the attempt after `failures` failed ones: 1 s, 2 s, 4 s, 8 s, then 15 s. */
export function retryDelayMs(failures: number): number {
  return Math.min(1000 * 2 ** Math.max(0, failures), 15_000);
}

/** Asks `/graphql` the smallest question there is: any GraphQL answer, even an error, means Cairn is there. */
export const askGraphQL: Probe = async () => {
  try {
    const response = await globalThis.fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json" },
      body: JSON.stringify({ query: "{ __typename }" }),
      cache: "no-store",
    });
    return (response.headers.get("content-type") ?? "").includes("json") && !GATEWAY_FAILURES.has(response.status);
  } catch {
    return false;
  }
};

export class ConnectionMonitor {
  #state: ConnectionState = { reachable: true, lastAnswerAt: null, checking: false, nextAttemptAt: null };
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  readonly #comebackListeners = new Set<() => void>();
  #failures = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #watchers = 0;
  #probe: Probe = askGraphQL;

  /** The state now; a new object at each change. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Whether something watches (and so asks the server again until it answers). */
  get watching(): boolean {
    return this.#watchers > 0;
  }

  /** Calls `listener` with each new state; returns the function that stops. */
  subscribe(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Calls `listener` each time the server answers again after it could not be reached; returns the function that stops. */
  onComeback(listener: () => void): () => void {
    this.#comebackListeners.add(listener);
    return () => void this.#comebackListeners.delete(listener);
  }

  /** The server answered a request. */
  answered(): void {
    const cameBack = !this.#state.reachable;
    this.#failures = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#set({ reachable: true, lastAnswerAt: new Date(), checking: false, nextAttemptAt: null });
    if (cameBack) for (const listener of [...this.#comebackListeners]) listener();
  }

  /** A request got no answer: the server cannot be reached, and is asked again with a backoff while someone watches. */
  unreachable(): void {
    if (!this.#state.reachable) return;
    this.#failures = 0;
    this.#set({ ...this.#state, reachable: false });
    if (!this.#state.checking) this.#schedule();
  }

  /**
   * Asks the server now (a person's "Retry now", the browser online again, a live socket that closed): the backoff starts
   * over. Does nothing while an attempt is under way or nothing watches.
   */
  check(): void {
    if (this.#state.checking || !this.watching) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#failures = 0;
    void this.#attempt();
  }

  /** Resolves once the server can be reached (at once if it can); rejects with the signal's reason if it aborts first. */
  whenReachable(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#state.reachable) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        stop();
        reject(signal?.reason);
      };
      const stop = this.onComeback(() => {
        stop();
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Watches the connection from `host` (the window): follows its `online` and `offline` events, and asks the server again
   * until it answers whenever it cannot be reached. Several may watch; returns the function that stops this one.
   */
  watch(host: ConnectionHost, probe: Probe = askGraphQL): () => void {
    this.#probe = probe;
    this.#watchers++;
    // The browser's word is a hint, not the answer (an offline laptop still reaches a Cairn on itself): the server is asked.
    const onOffline = () => this.check();
    const onOnline = () => {
      if (!this.#state.reachable) this.check();
    };
    host.addEventListener("offline", onOffline);
    host.addEventListener("online", onOnline);
    if (!this.#state.reachable && this.#timer === undefined && !this.#state.checking) this.#schedule();
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      host.removeEventListener("offline", onOffline);
      host.removeEventListener("online", onOnline);
      this.#watchers--;
      if (!this.watching) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        if (this.#state.nextAttemptAt) this.#set({ ...this.#state, nextAttemptAt: null });
      }
    };
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.watching) return;
    const delay = retryDelayMs(this.#failures);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#attempt();
    }, delay);
    this.#set({ ...this.#state, nextAttemptAt: new Date(Date.now() + delay) });
  }

  async #attempt(): Promise<void> {
    this.#set({ ...this.#state, checking: true, nextAttemptAt: null });
    const answers = await this.#probe().catch(() => false);
    if (answers) return this.answered();
    // The first failure after the server was reachable starts the backoff; each next one doubles the wait.
    if (this.#state.reachable) this.#failures = 0;
    else this.#failures++;
    this.#set({ ...this.#state, reachable: false, checking: false });
    this.#schedule();
  }

  #set(state: ConnectionState): void {
    this.#state = state;
    for (const listener of [...this.#listeners]) listener(state);
  }
}

/** The app's one monitor: the API client, the live updates and the banner share it. */
export const connection = new ConnectionMonitor();
