/**
 * Relay connections over rows ordered newest first by (time, id). The cursor encodes that pair, so pages stay stable while
 * new rows arrive at the top: a client paging with `after` never sees a row twice nor skips one.
 */
import { InputError } from "../errors.js";

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  nodes: T[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  totalCount: number;
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

/** The Prisma `where` fragment selecting rows strictly after the cursor in (timeField desc, id desc) order. */
export function afterCursor(timeField: string, args: PageArgs): object {
  if (!args.after) return {};
  const { time, id } = decodeCursor(args.after);
  return { OR: [{ [timeField]: { lt: time } }, { [timeField]: time, id: { lt: id } }] };
}

export function toConnection<T extends { id: string }>(
  rows: T[],
  first: number,
  totalCount: number,
  timeOf: (row: T) => Date,
): Connection<T> {
  const nodes = rows.slice(0, first);
  const edges = nodes.map((node) => ({ cursor: encodeCursor(timeOf(node), node.id), node }));
  return {
    edges,
    nodes,
    pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null },
    totalCount,
  };
}

/** The same page with each node mapped (rows to API objects), cursors kept. */
export function mapConnection<T, U>(page: Connection<T>, map: (node: T) => U): Connection<U> {
  return { ...page, nodes: page.nodes.map(map), edges: page.edges.map((edge) => ({ cursor: edge.cursor, node: map(edge.node) })) };
}

/** A Prisma model delegate, as far as paging needs it. */
interface PageableModel<T> {
  findMany(args: { where: object; orderBy: object[]; take: number }): Promise<T[]>;
  count(args: { where: object }): Promise<number>;
}

/** One page of `model` rows matching `where`, newest first by (timeField, id). */
export async function paginate<T extends { id: string }>(
  model: PageableModel<T>,
  where: object,
  timeField: keyof T & string,
  page: PageArgs,
): Promise<Connection<T>> {
  const first = pageSize(page);
  const [rows, totalCount] = await Promise.all([
    model.findMany({
      where: { AND: [where, afterCursor(timeField, page)] },
      orderBy: [{ [timeField]: "desc" }, { id: "desc" }],
      take: first + 1,
    }),
    model.count({ where }),
  ]);
  return toConnection(rows, first, totalCount, (row) => row[timeField] as Date);
}
