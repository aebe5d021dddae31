import type { ParamMatcher } from "@sveltejs/kit";

/** Matches a UUID (any version, either case): the ids of jobs, runs, remotes and pools. */
export const match = ((param: string): boolean =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(param)) satisfies ParamMatcher;
