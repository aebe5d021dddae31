/**
 * Queries and mutations executed by graphql-jit: each operation is compiled once into a JavaScript function that walks its
 * own selection, instead of graphql-js interpreting the document for every field of every item. graphql-js allocates, per
 * field executed, its arguments, a resolve-info and a path: on `{ jobs }` under load (bench:api) garbage collection was a
 * quarter of the server's CPU, and graphql-js's execution most of the rest of the API's own work.
 *
 * What stays as it was: Apollo parses, validates (Cairn's rules included) and caches documents; the resolvers, their role
 * checks and the error mapping are the same functions; subscriptions keep graphql-js (each event is executed once for all
 * its subscribers already: shared-subscription.ts). Where graphql-jit answers differently from graphql-js, graphql-js
 * decides (below); test/foundation/compiled-execution.test.ts holds the two to the same answers and errors.
 *
 * Compiled functions are kept per document object, so they go when the document goes: Apollo's document cache (an LRU of
 * parsed and validated documents) and graphql-ws's operations decide how many live.
 */
import {
  execute,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  Kind,
  visit,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from "graphql";
import { compileQuery, isCompiledQuery, type CompiledQuery } from "graphql-jit";

interface Compiled {
  /** Absent when the document has no such operation: graphql-js says why, in its words (Apollo passes them on). */
  query?: CompiledQuery | ExecutionResult;
  operation: OperationDefinitionNode | null | undefined;
  /**
   * Variables written as a field of an input object (`filter: { search: $s }`). Left out by the caller, graphql-js leaves
   * that field out of the argument (the spec's "not provided") where graphql-jit sets it to null, which to an update means
   * "clear it": such a request is executed by graphql-js.
   */
  inInputObjects: string[];
}

const compiledBySchema = new WeakMap<GraphQLSchema, WeakMap<DocumentNode, Map<string, Compiled>>>();

function compiled(schema: GraphQLSchema, document: DocumentNode, operationName: string | null | undefined): Compiled {
  let byDocument = compiledBySchema.get(schema);
  if (!byDocument) {
    byDocument = new WeakMap();
    compiledBySchema.set(schema, byDocument);
  }
  let byOperation = byDocument.get(document);
  if (!byOperation) {
    byOperation = new Map();
    byDocument.set(document, byOperation);
  }
  const key = operationName ?? "";
  let entry = byOperation.get(key);
  if (!entry) {
    const operation = getOperationAST(document, operationName);
    // Not kept: a client naming operations the document does not have would otherwise grow the map without end.
    if (!operation) return { operation, inInputObjects: [] };
    entry = {
      query: compileQuery(schema, document, operationName ?? undefined),
      operation,
      inInputObjects: variablesInInputObjects(document),
    };
    byOperation.set(key, entry);
  }
  return entry;
}

function variablesInInputObjects(document: DocumentNode): string[] {
  const names = new Set<string>();
  visit(document, {
    ObjectField(field) {
      if (field.value.kind === Kind.VARIABLE) names.add(field.value.name.value);
    },
  });
  return [...names];
}

/** graphql-js's `execute`, for a query or a mutation, through the operation's compiled function. */
export function executeCompiled(args: ExecutionArgs): Promise<ExecutionResult> | ExecutionResult {
  const { query, operation, inInputObjects } = compiled(args.schema, args.document, args.operationName);
  if (!query) return execute(args);
  if (!isCompiledQuery(query)) return withGraphQLErrors(query);
  const variableValues = args.variableValues ?? {};
  if (inInputObjects.some((name) => !Object.hasOwn(variableValues, name))) return execute(args);
  // Variables are checked by graphql-js first, as its `execute` checks them: graphql-jit's refusals say less ("Expected type
  // Color." where graphql-js says the value "BLUE" does not exist in the enum "Color"). Accepted, they are handed to the
  // compiled function as they came: it coerces them itself.
  if (operation?.variableDefinitions?.length) {
    const checked = getVariableValues(args.schema, operation.variableDefinitions, variableValues, { maxErrors: 50 });
    if (checked.errors) return { errors: checked.errors };
  }
  const result = query.query(args.rootValue, args.contextValue, variableValues);
  return isPromise(result) ? result.then(withGraphQLErrors) : withGraphQLErrors(result);
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown }).then === "function";
}

/**
 * graphql-jit reports errors with its own GraphQLError, which passes `instanceof GraphQLError` but leaves `extensions`
 * undefined where graphql-js always sets an object (Apollo reads `extensions.code` and fails on it): each becomes the error
 * graphql-js would have made, with the same message, locations, path and thrown value, whose extensions it inherits.
 */
function withGraphQLErrors(result: ExecutionResult): ExecutionResult {
  if (!result.errors?.length) return result;
  return { ...result, errors: result.errors.map(asGraphQLError) };
}

function asGraphQLError(error: GraphQLError): GraphQLError {
  if (Object.getPrototypeOf(error) === GraphQLError.prototype) return error;
  // A field's error always has a thrown value under it in graphql-js (an Error of the same message when graphql-js raised
  // it itself, as for a null in a non-null field); graphql-jit keeps only the values resolvers threw.
  const original = error.originalError ?? (error.path ? new Error(error.message) : undefined);
  // Thrown as a GraphQLError with its path already (a resolver's own), graphql-js passes it on as it is.
  if (original instanceof GraphQLError && original.path) return original;
  const converted = new GraphQLError(error.message, {
    path: error.path,
    originalError: original,
    extensions: error.extensions ?? undefined,
  });
  // graphql-js computes locations from the document's nodes, which graphql-jit does not keep; it gives the same locations.
  (converted as { locations?: GraphQLError["locations"] }).locations = error.locations;
  return converted;
}
