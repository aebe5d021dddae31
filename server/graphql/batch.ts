/**
 * Batching of field resolvers within one operation: graphql-js resolves a field of every item of a list in one synchronous
 * pass, so the keys asked in that pass are loaded by one call (one query for the last run of every job, not one per job).
 * Nothing is cached past the pass: a subscription's context lives for many events, and each event must read fresh rows.
 */

import type { GraphQLContext } from "./context.js";
import { toJob, toPool } from "./mappers.js";
import type { Job } from "./types/job.js";

type Loader<K, V, C> = (keys: K[], context: C) => Promise<Map<K, V>>;

interface PendingBatch {
  keys: Map<unknown, { resolve: (value: unknown) => void; reject: (error: unknown) => void; promise: Promise<unknown> }>;
}

/** Batches under way, per operation context and per loader. */
const pending = new WeakMap<object, Map<unknown, PendingBatch>>();

/**
 * The value `load` gives for `key`, loaded together with the other keys asked for in the same pass of the same operation
 * (`context`); `undefined` when `load`'s map has no entry for it. `load` must be one function per kind of load (a module
 * constant): it identifies the batch.
 */
export function batched<K, V, C extends object>(context: C, load: Loader<K, V, C>, key: K): Promise<V | undefined> {
  let byLoader = pending.get(context);
  if (!byLoader) {
    byLoader = new Map();
    pending.set(context, byLoader);
  }
  let batch = byLoader.get(load);
  if (!batch) {
    const created: PendingBatch = { keys: new Map() };
    batch = created;
    byLoader.set(load, created);
    // After the current pass (promise callbacks included, as DataLoader does), so that every sibling has asked.
    void Promise.resolve().then(() =>
      process.nextTick(() => {
        pending.get(context)?.delete(load);
        void flush(created, load, context);
      }),
    );
  }
  const existing = batch.keys.get(key);
  if (existing) return existing.promise as Promise<V | undefined>;
  let resolve!: (value: unknown) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<unknown>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  batch.keys.set(key, { resolve, reject, promise: promise });
  return promise as Promise<V | undefined>;
}

async function flush<K, V, C>(batch: PendingBatch, load: Loader<K, V, C>, context: C): Promise<void> {
  try {
    const values = await load([...batch.keys.keys()] as K[], context);
    for (const [key, waiter] of batch.keys) waiter.resolve(values.get(key as K));
  } catch (error) {
    for (const waiter of batch.keys.values()) waiter.reject(error);
  }
}

/*
 * Loaders shared by field resolvers of types that lists return by the thousand (vmProtection's VMs and restore points): one
 * query per pass whatever the number of items. Each is a module constant, as `batched` requires.
 */

/** Every pool (they are few: one query for all, rather than one per VM asking for its pool). */
export const POOLS_BY_ID = async (ids: string[], { services }: GraphQLContext) => {
  const wanted = new Set(ids);
  return new Map((await services.pools.list()).filter((pool) => wanted.has(pool.id)).map((pool) => [pool.id, pool]));
};

/** Pools by id as the API shows them, mapped once per operation rather than once per VM that names them. */
export const POOL_VIEWS_BY_ID = async (ids: string[], context: GraphQLContext) =>
  new Map([...(await POOLS_BY_ID(ids, context))].map(([id, row]) => [id, toPool(row, context.services)]));

/** Every remote, by id (few, like pools). */
export const REMOTES_BY_ID = async (ids: string[], { services, receivedAt }: GraphQLContext) => {
  const wanted = new Set(ids);
  return new Map((await services.remotes.list(receivedAt)).filter((remote) => wanted.has(remote.id)).map((remote) => [remote.id, remote]));
};

/** Jobs with their schedules, by id: taken from the jobs list, which is kept in memory between changes (ConfigurationCache). */
export const JOBS_WITH_SCHEDULES_BY_ID = async (ids: string[], { services, receivedAt }: GraphQLContext) => {
  const wanted = new Set(ids);
  return new Map((await services.jobs.list(receivedAt)).filter((job) => wanted.has(job.id)).map((job) => [job.id, job]));
};

/** Jobs by id as the API shows them, mapped once per job rather than once per restore point or run that names it. */
export const JOB_VIEWS_BY_ID = async (ids: string[], context: GraphQLContext) => {
  const rows = await JOBS_WITH_SCHEDULES_BY_ID(ids, context);
  return new Map([...rows].map(([id, row]) => [id, jobView(row)]));
};

/** Job views by the row they were mapped from: rows of the kept jobs list are frozen and shared until a change. */
const jobViews = new WeakMap<object, Job>();

/** A job row as the API shows it; for a kept (frozen) row, mapped once and shared, like the row. */
export function jobView(row: Parameters<typeof toJob>[0]): Job {
  if (!Object.isFrozen(row)) return toJob(row);
  let view = jobViews.get(row);
  if (!view) {
    view = Object.freeze(toJob(row));
    jobViews.set(row, view);
  }
  return view;
}

/** Runs by id. */
export const RUNS_BY_ID = (ids: string[], { services }: GraphQLContext) => services.runs.getMany(ids);

/** The newest restore point of each VM, by VM uuid (Vm.lastRestorePoint). */
export const NEWEST_RESTORE_POINTS = (vmUuids: string[], { services }: GraphQLContext) =>
  services.stats.edgeRestorePoints(vmUuids, "newest");

/** The oldest restore point of each VM, by VM uuid (Vm.protectedSince). */
export const OLDEST_RESTORE_POINTS = (vmUuids: string[], { services }: GraphQLContext) =>
  services.stats.edgeRestorePoints(vmUuids, "oldest");
