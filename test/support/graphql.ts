/**
 * Typed GraphQL for tests: the dashboard's gql.tada `graphql` tag (typed from `schema.graphql` through the generated
 * `dashboard/src/lib/api/graphql-env.d.ts`), so that a test's query that no longer matches the schema is a type error and
 * its result is typed without a hand-written `<any>`.
 *
 *   const RUN = graphql("query($id: ID!) { run(id: $id) { id status } }");
 *   const { data } = await server.graphql(RUN, { id });   // data: { run: { id: string; status: RunStatus } | null }
 *
 * The helpers send the document's text exactly as written (not re-printed), so a typed call sends what the string did.
 */
import { graphql as tada, type ResultOf, type TadaDocumentNode, type VariablesOf } from "../../dashboard/src/lib/api/graphql.js";

export type { ResultOf, TadaDocumentNode, VariablesOf };

/** The text each document was made from. */
const sources = new WeakMap<object, string>();

/** gql.tada's `graphql` (no fragments in tests), remembering the text so that it is sent as written. */
export const graphql = ((source: string) => {
  const document = tada(source);
  sources.set(document, source);
  return document;
}) as unknown as typeof tada;

/** A document made with {@link graphql}. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDocument = TadaDocumentNode<any, any>;

/** The query text to send: a string as it is, a document as it was written. */
export function querySource(query: string | AnyDocument): string {
  if (typeof query === "string") return query;
  const source = sources.get(query);
  if (source === undefined) throw new Error("a document not made with test/support/graphql.ts's graphql()");
  return source;
}
