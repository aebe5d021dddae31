/**
 * Relay connections over rows ordered newest first by (time, id). The cursor encodes that pair, so pages stay stable while
 * new rows arrive at the top: a client paging with `after` never sees a row twice nor skips one.
 */
import { InputError } from "../errors.js";

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  nodes: T[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  /**
   * How many rows match, across all pages: counted when first read (a getter), never before. On a long history the count
   * reads every matching row where the page reads fifty, so a client that does not ask for `totalCount` does not pay for it.
   */
  readonly totalCount: Promise<number>;
}

export interface PageArgs {
  first?: number | null;
  after?: string | null;
}

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 500;

export interface CursorPosition {
  time: Date;
  id: string;
}

export function encodeCursor(time: Date, id: string): string {
  return Buffer.from(JSON.stringify([time.toISOString(), id])).toString("base64url");
}

export function decodeCursor(cursor: string): CursorPosition {
  try {
    const [time, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [string, string];
    const date = new Date(time);
    if (Number.isNaN(date.getTime()) || typeof id !== "string") throw new Error("bad cursor");
    return { time: date, id };
  } catch {
    throw new InputError("after", "is not a cursor from this list: pass pageInfo.endCursor of the previous page");
  }
}

export function pageSize(args: PageArgs): number {
  const first = args.first ?? DEFAULT_PAGE;
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE) throw new InputError("first", `must be from 0 to ${MAX_PAGE}`);
  return first;
}

/**
 * The Prisma `where` fragment selecting rows strictly after the cursor in (timeField desc, id desc) order. The leading
 * `timeField <= time` is implied by the OR but is what lets Postgres start the index scan at the cursor: with the OR
 * alone, a page deep in read (and dropped) every newer row first.
 */
export function afterCursor(timeField: string, args: PageArgs): object {
  if (!args.after) return {};
  const { time, id } = decodeCursor(args.after);
  return { [timeField]: { lte: time }, OR: [{ [timeField]: { lt: time } }, { id: { lt: id } }] };
}

export function toConnection<T extends { id: string }>(
  rows: T[],
  first: number,
  count: () => Promise<number>,
  timeOf: (row: T) => Date,
): Connection<T> {
  const nodes = rows.slice(0, first);
  const edges = nodes.map((node) => ({ cursor: encodeCursor(timeOf(node), node.id), node }));
  let counted: Promise<number> | undefined;
  return {
    edges,
    nodes,
    pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null },
    get totalCount() {
      counted ??= count();
      return counted;
    },
  };
}

/** The same page with each node mapped (rows to API objects), cursors kept; the count stays lazy. */
export function mapConnection<T, U>(page: Connection<T>, map: (node: T) => U): Connection<U> {
  return {
    nodes: page.nodes.map(map),
    edges: page.edges.map((edge) => ({ cursor: edge.cursor, node: map(edge.node) })),
    pageInfo: page.pageInfo,
    get totalCount() {
      return page.totalCount;
    },
  };
}

/** A Prisma model delegate, as far as paging needs it. */
interface PageableModel<T> {
  findMany(args: { where: object; orderBy: object[]; take: number }): Promise<T[]>;
  count(args: { where: object }): Promise<number>;
}

/**
 * One page of `model` rows matching `where`, newest first by (timeField, id). `count`: how to count them when the caller
 * knows better than `model.count` (the runs page's rollup, server/services/run-service.ts).
 */
export async function paginate<T extends { id: string }>(
  model: PageableModel<T>,
  where: object,
  timeField: keyof T & string,
  page: PageArgs,
  count: () => Promise<number> = () => model.count({ where }),
): Promise<Connection<T>> {
  const first = pageSize(page);
  const rows = await model.findMany({
    where: { AND: [where, afterCursor(timeField, page)] },
    orderBy: [{ [timeField]: "desc" }, { id: "desc" }],
    take: first + 1,
  });
  return toConnection(rows, first, count, (row) => row[timeField] as Date);
}
