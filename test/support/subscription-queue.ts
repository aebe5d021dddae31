/** A graphql-ws subscription as a queue a test reads event by event (no sleeps: `next()` waits, bounded). */
import type { Client } from "graphql-ws";

export interface Subscription<T> {
  /** The next payload not yet taken, waiting for it if needed (fails after `waitMs`). */
  next(): Promise<T>;
  dispose(): void;
}

/** Subscribes and queues what arrives; an error or an end of the subscription fails the pending and later `next()`. */
export function subscribe<T>(client: Client, query: string, variables: Record<string, unknown>, waitMs = 10_000): Subscription<T> {
  const queue: T[] = [];
  const waiting: { resolve: (value: T) => void; reject: (error: unknown) => void }[] = [];
  let failure: unknown;
  const fail = (error: unknown) => {
    failure = error;
    for (const waiter of waiting.splice(0)) waiter.reject(error);
  };
  const dispose = client.subscribe<T>(
    { query, variables },
    {
      next: (result) => {
        if (result.errors) return fail(new Error(`subscription error: ${JSON.stringify(result.errors)}`));
        const value = Object.values(result.data as object)[0] as T;
        const waiter = waiting.shift();
        if (waiter) waiter.resolve(value);
        else queue.push(value);
      },
      error: (error) => fail(error),
      complete: () => fail(new Error("the subscription completed")),
    },
  );
  return {
    next() {
      if (queue.length > 0) return Promise.resolve(queue.shift()!);
      if (failure) return Promise.reject(failure);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no event within ${waitMs} ms`)), waitMs);
        waiting.push({
          resolve: (value) => (clearTimeout(timer), resolve(value)),
          reject: (error) => (clearTimeout(timer), reject(error)),
        });
      });
    },
    dispose,
  };
}

/**
 * graphql-ws says nothing when a subscription is live: publish a harmless event every 50 ms (bounded by `waitMs`) until the
 * first payload arrives, and return it.
 */
export async function untilActive<T>(subscription: Subscription<T>, publish: () => Promise<void>, waitMs = 10_000): Promise<T> {
  const first = subscription.next();
  let arrived = false;
  void first.then(
    () => (arrived = true),
    () => (arrived = true),
  );
  const started = Date.now();
  while (!arrived && Date.now() - started < waitMs) {
    await publish();
    await Promise.race([first.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 50))]);
  }
  return first;
}
