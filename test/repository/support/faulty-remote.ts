import type { Remote } from "../../../server/remotes/remote.js";
import { RemoteError } from "../../../server/remotes/remote-error.js";

/** The operations that read from a remote: each call (and each read of a random-access handle) counts as one. */
const READS = new Set(["readFile", "stat", "list", "createReadStream", "openRandomAccess"]);

export interface FaultyRemote {
  remote: Remote;
  /** Reads made so far. */
  readonly reads: number;
  /** Whether the injected failure happened. */
  readonly failed: boolean;
}

/**
 * Wraps a remote so that its `failAt`-th read (1-based; 0 = never) fails once with a transient I/O error, as a flaky disk
 * or network would: the other reads go through. Everything else, `localPath` included (so merges still run in place on a
 * LOCAL remote), is the wrapped remote's own.
 */
export function faultyRemote(inner: Remote, failAt: number): FaultyRemote {
  let reads = 0;
  let failed = false;
  const maybeFail = (operation: string, path: unknown) => {
    reads++;
    if (reads !== failAt) return;
    failed = true;
    throw new RemoteError({
      code: "IO",
      remote: inner.name,
      operation,
      path: String(path),
      detail: "injected I/O error (test)",
      transient: true,
    });
  };
  const remote = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target) as unknown;
      if (typeof value !== "function") return value;
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      if (!READS.has(String(key))) return method;
      return async (...args: unknown[]) => {
        maybeFail(String(key), args[0]);
        const result = await method(...args);
        if (key !== "openRandomAccess") return result;
        const file = result as { read(offset: number, length: number): Promise<Buffer> };
        return new Proxy(file, {
          get(handle, member) {
            const inner = Reflect.get(handle, member, handle) as unknown;
            if (member !== "read" || typeof inner !== "function")
              return typeof inner === "function" ? (inner as (...a: unknown[]) => unknown).bind(handle) : inner;
            return async (offset: number, length: number) => {
              maybeFail("read", args[0]);
              return (inner as (o: number, l: number) => Promise<Buffer>).call(handle, offset, length);
            };
          },
        });
      };
    },
  });
  return {
    remote,
    get reads() {
      return reads;
    },
    get failed() {
      return failed;
    },
  };
}
