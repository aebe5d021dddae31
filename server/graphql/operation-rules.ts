/**
 * What an operation must pass before it runs, the same over HTTP (Apollo) and graphql-ws: the request's nesting, the parser's
 * token budget, graphql-js's validation rules plus our query limits, its variables, the transport it may use, and what an
 * anonymous caller may ask. http/http-server.ts wires these into both transports; nothing else decides them.
 */
import {
  GraphQLError,
  Kind,
  getOperationAST,
  getVariableValues,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationRule,
} from "graphql";
import type { Principal } from "../domain/principal.js";
import { QueryTooLargeError, queryLimitsRule } from "./query-limits.js";

/**
 * Deepest nesting of brackets in a query text, and of arrays/objects in its variables. graphql-js's parser and validator
 * recurse once per level and overflow the stack near 2,000 levels; real queries stay far below this (the depth limit of
 * selections is 12).
 */
export const MAX_NESTING = 100;

/** The parser's token budget: the dashboard's largest document is a few hundred tokens; this bounds parse time. */
export const PARSE_OPTIONS = { maxTokens: 20_000 } as const;

/** Our rules, added to graphql-js's `specifiedRules` (Apollo adds those itself). */
export const CAIRN_VALIDATION_RULES: readonly ValidationRule[] = [queryLimitsRule()];

/** Every validation rule an operation passes on a transport that does not add graphql-js's own. */
export const ALL_VALIDATION_RULES: readonly ValidationRule[] = [...specifiedRules, ...CAIRN_VALIDATION_RULES];

/** The root fields an anonymous caller may ask: signing in, and `me` (null until signed in). Introspection needs a sign-in. */
export const ANONYMOUS_ROOT_FIELDS: ReadonlySet<string> = new Set(["login", "me", "__typename"]);

const INTROSPECTION_ROOT_FIELDS = new Set(["__schema", "__type"]);

/**
 * The query text and its variables nest at most {@link MAX_NESTING} levels. Checked before parsing: a literal like `[[[[…]]]]`
 * 10,000 deep would overflow the parser's stack. Strings and comments are skipped, so brackets inside them do not count.
 */
export function checkNesting(source: string, variables: unknown): GraphQLError | undefined {
  const textDepth = bracketDepth(source);
  if (textDepth > MAX_NESTING) {
    return new QueryTooLargeError(
      `The query nests brackets more than ${MAX_NESTING} levels deep; the limit is ${MAX_NESTING}. Send flatter values.`,
    );
  }
  if (valueDepth(variables) > MAX_NESTING) {
    return new QueryTooLargeError(
      `The variables nest lists or objects more than ${MAX_NESTING} levels deep; the limit is ${MAX_NESTING}. Send flatter values.`,
    );
  }
  return undefined;
}

/** Deepest bracket nesting of a GraphQL text; stops counting once past the limit. */
function bracketDepth(source: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    if (char === "#") {
      while (i < source.length && source[i] !== "\n" && source[i] !== "\r") i++;
    } else if (char === '"') {
      if (source.startsWith('"""', i)) {
        // Block string: only \""" escapes its end.
        i += 3;
        while (i < source.length && !source.startsWith('"""', i)) i += source.startsWith('\\"""', i) ? 4 : 1;
        i += 2;
      } else {
        i++;
        while (i < source.length && source[i] !== '"' && source[i] !== "\n") i += source[i] === "\\" ? 2 : 1;
      }
    } else if (char === "[" || char === "{" || char === "(") {
      depth++;
      if (depth > deepest) deepest = depth;
      if (deepest > MAX_NESTING) return deepest;
    } else if (char === "]" || char === "}" || char === ")") {
      depth = Math.max(0, depth - 1);
    }
  }
  return deepest;
}

/** Deepest nesting of arrays and objects in a JSON value, without recursion (the value may be arbitrarily deep). */
function valueDepth(value: unknown): number {
  let deepest = 0;
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (item.value === null || typeof item.value !== "object") continue;
    const depth = item.depth + 1;
    if (depth > deepest) deepest = depth;
    if (deepest > MAX_NESTING) return deepest;
    for (const child of Array.isArray(item.value) ? item.value : Object.values(item.value)) {
      if (child !== null && typeof child === "object") stack.push({ value: child, depth });
    }
  }
  return deepest;
}

/**
 * Whether this caller may run this operation on this transport, decided before anything runs: a subscription needs
 * graphql-ws, and an anonymous caller may only sign in (introspection included: codegen tools sign in first).
 */
export function checkOperationAccess(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  principal: Principal | undefined,
  transport: "HTTP" | "WS",
): GraphQLError | undefined {
  if (transport === "HTTP" && operation.operation === "subscription") {
    return new GraphQLError(
      "Subscriptions need graphql-ws on /graphql: open a WebSocket there with the graphql-transport-ws protocol (see API.md).",
      { extensions: { code: "BAD_REQUEST", http: { status: 400 } } },
    );
  }
  if (principal) return undefined;
  const fields = rootFieldNames(document, operation.selectionSet);
  if ([...fields].some((name) => INTROSPECTION_ROOT_FIELDS.has(name))) {
    return new GraphQLError(
      "Introspection needs a signed-in caller: sign in with the login mutation, then send Authorization: Bearer <token>.",
      { extensions: { code: "UNAUTHENTICATED", http: { status: 401 } } },
    );
  }
  if ([...fields].some((name) => !ANONYMOUS_ROOT_FIELDS.has(name))) {
    return new GraphQLError("Sign in first: send Authorization: Bearer <token> (the login mutation gives one).", {
      extensions: { code: "UNAUTHENTICATED", http: { status: 401 } },
    });
  }
  return undefined;
}

/** The root fields an operation selects, through its fragments (validation has refused cycles and unknown fragments). */
function rootFieldNames(document: DocumentNode, selectionSet: SelectionSetNode): Set<string> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const names = new Set<string>();
  const seen = new Set<string>();
  const visit = (set: SelectionSetNode) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) names.add(selection.name.value);
      else if (selection.kind === Kind.INLINE_FRAGMENT) visit(selection.selectionSet);
      else if (!seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        if (fragment) visit(fragment.selectionSet);
      }
    }
  };
  visit(selectionSet);
  return names;
}

/**
 * Documents that parsed and passed validation, by query text, per schema: a thousand dashboards subscribing to the same
 * operation at the start of a run cost one parse and one validation, not a thousand (Apollo keeps the same kind of cache
 * for HTTP). Validation depends only on the schema and the document; a refused query is not kept. Bounded: emptied when
 * full, which costs one parse and validation per query in use.
 */
const knownDocuments = new WeakMap<GraphQLSchema, Map<string, DocumentNode>>();
const MAX_KNOWN_DOCUMENTS = 1000;

function validDocuments(schema: GraphQLSchema): Map<string, DocumentNode> {
  let known = knownDocuments.get(schema);
  if (!known) {
    known = new Map();
    knownDocuments.set(schema, known);
  }
  return known;
}

export interface OperationRequest {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

export interface PreparedOperation {
  document: DocumentNode;
  operation: OperationDefinitionNode;
}

/**
 * For a transport without Apollo's pipeline (graphql-ws): nesting, parse, validation, operation, variables and access, each
 * failure a GraphQLError with the code Apollo gives the same failure over HTTP.
 */
export function prepareOperation(
  schema: GraphQLSchema,
  request: OperationRequest,
  principal: Principal | undefined,
  transport: "HTTP" | "WS",
): PreparedOperation | readonly GraphQLError[] {
  const nesting = checkNesting(request.query, request.variables);
  if (nesting) return [nesting];
  const known = validDocuments(schema);
  let document = known.get(request.query);
  if (!document) {
    try {
      document = parse(request.query, PARSE_OPTIONS);
    } catch (error) {
      const syntax = error instanceof GraphQLError ? error : undefined;
      return [
        new GraphQLError(syntax?.message ?? "The query could not be read.", {
          source: syntax?.source,
          positions: syntax?.positions,
          extensions: { code: "GRAPHQL_PARSE_FAILED" },
        }),
      ];
    }
    const validationErrors = validate(schema, document, ALL_VALIDATION_RULES);
    if (validationErrors.length > 0) {
      return validationErrors.map((error) =>
        error instanceof QueryTooLargeError
          ? error
          : new GraphQLError(error.message, { nodes: error.nodes, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } }),
      );
    }
    if (known.size >= MAX_KNOWN_DOCUMENTS) known.clear();
    known.set(request.query, document);
  }
  const operation = getOperationAST(document, request.operationName);
  if (!operation) {
    // graphql-js's own words, which Apollo sends for the same request over HTTP.
    const message = request.operationName
      ? `Unknown operation named "${request.operationName}".`
      : "Must provide operation name if query contains multiple operations.";
    return [new GraphQLError(message, { extensions: { code: "OPERATION_RESOLUTION_FAILURE" } })];
  }
  const access = checkOperationAccess(document, operation, principal, transport);
  if (access) return [access];
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], request.variables ?? {}, { maxErrors: 20 });
  if (coerced.errors) {
    return coerced.errors.map((error) => new GraphQLError(error.message, { nodes: error.nodes, extensions: { code: "BAD_USER_INPUT" } }));
  }
  return { document, operation };
}
