/**
 * Limits on what one operation may ask, checked before it runs: nesting depth, the number of fields it may return (fragments
 * expanded; a list counts as `first` items when its field or the connection above it says so, else 10), and aliases. A query past a limit is refused with
 * BAD_USER_INPUT naming the limit, instead of tying up the database.
 */
import {
  GraphQLError,
  Kind,
  getNamedType,
  getNullableType,
  isListType,
  isObjectType,
  type ASTVisitor,
  type FragmentDefinitionNode,
  type GraphQLNamedType,
  type SelectionSetNode,
  type ValidationContext,
} from "graphql";

export interface QueryLimits {
  maxDepth: number;
  maxCost: number;
  maxAliases: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = { maxDepth: 12, maxCost: 20_000, maxAliases: 50 };

export class QueryTooLargeError extends GraphQLError {
  constructor(message: string) {
    super(message, { extensions: { code: "BAD_USER_INPUT", tooLarge: true } });
  }
}

const DEFAULT_LIST_SIZE = 10;

export function queryLimitsRule(limits: QueryLimits = DEFAULT_QUERY_LIMITS) {
  return (context: ValidationContext): ASTVisitor => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const definition of context.getDocument().definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
    }
    return {
      OperationDefinition(operation) {
        let aliases = 0;
        const measure = (
          set: SelectionSetNode,
          parentType: GraphQLNamedType | undefined,
          pageSize: number | undefined,
          depth: number,
          seen: Set<string>,
        ): { depth: number; cost: number } => {
          let maxDepth = depth;
          let cost = 0;
          for (const selection of set.selections) {
            if (selection.kind === Kind.FIELD) {
              if (selection.alias) aliases++;
              if (!selection.selectionSet) {
                cost += 1;
                continue;
              }
              const first = selection.arguments?.find((a) => a.name.value === "first")?.value;
              const ownPage = first?.kind === Kind.INT ? Math.max(1, Number(first.value)) : first ? DEFAULT_LIST_SIZE * 5 : undefined;
              const field = isObjectType(parentType) ? parentType.getFields()[selection.name.value] : undefined;
              const isList = field ? isListType(getNullableType(field.type)) : true;
              const multiplier = isList ? (ownPage ?? pageSize ?? DEFAULT_LIST_SIZE) : 1;
              const inner = measure(
                selection.selectionSet,
                field ? getNamedType(field.type) : undefined,
                ownPage ?? pageSize,
                depth + 1,
                seen,
              );
              maxDepth = Math.max(maxDepth, inner.depth);
              cost += 1 + multiplier * inner.cost;
            } else if (selection.kind === Kind.INLINE_FRAGMENT) {
              const inner = measure(selection.selectionSet, parentType, pageSize, depth, seen);
              maxDepth = Math.max(maxDepth, inner.depth);
              cost += inner.cost;
            } else {
              const name = selection.name.value;
              const fragment = fragments.get(name);
              if (!fragment || seen.has(name)) continue; // unknown and cyclic fragments are graphql-js's own errors
              const inner = measure(fragment.selectionSet, parentType, pageSize, depth, new Set([...seen, name]));
              maxDepth = Math.max(maxDepth, inner.depth);
              cost += inner.cost;
            }
            if (maxDepth > limits.maxDepth || cost > limits.maxCost) break;
          }
          return { depth: maxDepth, cost };
        };
        const rootType = context.getSchema().getRootType(operation.operation) ?? undefined;
        const { depth, cost } = measure(operation.selectionSet, rootType, undefined, 1, new Set());
        if (depth > limits.maxDepth) {
          context.reportError(
            new QueryTooLargeError(
              `The query is nested ${depth} levels deep; the limit is ${limits.maxDepth}. Ask for fewer nested fields.`,
            ),
          );
        } else if (cost > limits.maxCost) {
          context.reportError(
            new QueryTooLargeError(
              `The query may select about ${cost} fields; the limit is ${limits.maxCost}. Page with a smaller \`first\` or ask for fewer fields.`,
            ),
          );
        } else if (aliases > limits.maxAliases) {
          context.reportError(new QueryTooLargeError(`The query uses ${aliases} aliases; the limit is ${limits.maxAliases}.`));
        }
      },
    };
  };
}
