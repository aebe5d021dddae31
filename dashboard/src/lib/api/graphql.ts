/**
 * The `graphql` tag of the dashboard: documents written with it are typed from `schema.graphql` at the
 * repository root, through `graphql-env.d.ts`, which `npm run generate` writes with `gql-tada generate output`.
 * A document that no longer matches the schema is a type error, so `npm run check:dashboard` (and the
 * dashboard build, which runs it) fails.
 */
import { initGraphQLTada } from "gql.tada";
import type { introspection } from "./graphql-env.d.ts";

export const graphql = initGraphQLTada<{
  introspection: introspection;
  // Fragments share field lists between operations; they are not used to hide data from components.
  disableMasking: true;
  // Custom scalars as they travel in JSON (see API.md, conventions).
  scalars: {
    DateTime: string;
    SafeInt: number;
    JSON: unknown;
  };
}>();

export type { FragmentOf, ResultOf, TadaDocumentNode, VariablesOf } from "gql.tada";
export { readFragment } from "gql.tada";
