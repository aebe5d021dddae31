/**
 * What a page loads from the API, with the failure to show and whether a load is under way; `ResourceView` shows it.
 */
import { untrack } from "svelte";
import { connection } from "../connection.js";
import { errorMessage } from "./errors.js";

export interface Resource<Data> {
  /**
   * The last data loaded, null until a load succeeds. Deeply reactive: a page patches it with what a mutation or a live
   * update answers, without a reload; the next load replaces it.
   */
  data: Data | null;
  /** Why the last load failed, as a message for people; null while a load runs and after one succeeds. */
  readonly error: string | null;
  readonly loading: boolean;
  /** Loads again (after a mutation); never rejects, a failure lands in `error`. */
  refresh(): Promise<void>;
}

/**
 * Loads with `load` at once, and again whenever a reactive value that `load` reads before its first `await` changes
 * (a filter in the URL, a page's id): so `load` must not read the resource itself. Each new load aborts the one before
 * (through its signal), whose answer is then dropped. The data stays while the next load runs, so a table keeps its
 * rows instead of flashing "Loading…" between two pages of it.
 *
 * When the Cairn server answers again after it could not be reached, loads again: what it shows may have changed
 * meanwhile. (While it cannot be reached, a load simply waits for it: see the API client.)
 *
 * Creates an effect: call it while a component initialises. Leaving the page aborts the load under way.
 */
export function createResource<Data>(load: (signal: AbortSignal) => Promise<Data>): Resource<Data> {
  let data = $state<Data | null>(null);
  let error = $state<string | null>(null);
  let loading = $state(true);
  /** The load whose answer counts; an older one may still settle, and is ignored. */
  let latest: AbortController | undefined;

  function start(): { controller: AbortController; answer: Promise<Data> } {
    latest?.abort();
    const controller = new AbortController();
    latest = controller;
    error = null;
    loading = true;
    let answer: Promise<Data>;
    try {
      answer = load(controller.signal);
    } catch (cause) {
      answer = Promise.reject(cause);
    }
    return { controller, answer };
  }

  async function settle({ controller, answer }: ReturnType<typeof start>): Promise<void> {
    try {
      const loaded = await answer;
      if (controller === latest) data = loaded;
    } catch (cause) {
      if (controller === latest) error = errorMessage(cause);
    } finally {
      if (controller === latest) loading = false;
    }
  }

  $effect(() => {
    void settle(start());
    return () => {
      latest?.abort();
      latest = undefined;
    };
  });
  $effect(() => connection.onComeback(() => void settle(untrack(start))));

  return {
    get data() {
      return data;
    },
    set data(value) {
      data = value;
    },
    get error() {
      return error;
    },
    get loading() {
      return loading;
    },
    // Untracked: a refresh from another effect must not make that effect depend on what `load` reads.
    refresh: () => settle(untrack(start)),
  };
}
