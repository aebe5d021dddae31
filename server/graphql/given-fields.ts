/**
 * Fields a list's resolver hands its items, so that their field resolvers answer at once instead of through a batch
 * (batch.ts): vmProtection gives its thousand VMs their pool and their restore points their job, where a promise per
 * item and field made most of the request's time and garbage. A list gives a field only when the operation asks for it
 * (`selects`).
 */
import { type FragmentDefinitionNode, type GraphQLResolveInfo, Kind, type SelectionSetNode } from "graphql";

/** The fields a list's resolver gave its items (see `giveField`). */
const GIVEN = Symbol("given fields");
type Given = { [GIVEN]?: Record<string, unknown> };

/**
 * Gives `item` the value of its field `field`, which the field's resolver then answers at once (`givenField`). Kept on
 * the item (a symbol property: type-graphql copies an item's own properties, symbols included, into the instance it hands
 * a field resolver), so it lives as long as the item and no longer: a subscription's next event makes new items.
 */
export function giveField<T extends object>(item: T, field: string, value: unknown): T {
  const holder = item as Given;
  holder[GIVEN] ??= {};
  holder[GIVEN][field] = value;
  return item;
}

/** The value a list's resolver gave `item` for `field`, if it did. */
export function givenField<T>(item: object, field: string): { value: T } | undefined {
  const given = (item as Given)[GIVEN];
  return given && field in given ? { value: given[field] as T } : undefined;
}

/**
 * Whether the operation asks, under the field being resolved, for the field at `path` (`["vm", "pool"]`), through
 * fragments too: a list's resolver gives its items a field (`giveField`) only when it is asked for.
 */
export function selects(info: GraphQLResolveInfo, path: readonly string[]): boolean {
  const inSet = (set: SelectionSetNode | undefined, depth: number, seen: Set<string>): boolean => {
    if (!set) return false;
    return set.selections.some((selection) => {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value !== path[depth]) return false;
        return depth === path.length - 1 || inSet(selection.selectionSet, depth + 1, seen);
      }
      if (selection.kind === Kind.INLINE_FRAGMENT) return inSet(selection.selectionSet, depth, seen);
      if (seen.has(selection.name.value)) return false;
      const fragment: FragmentDefinitionNode | undefined = info.fragments[selection.name.value];
      return inSet(fragment?.selectionSet, depth, new Set([...seen, selection.name.value]));
    });
  };
  return info.fieldNodes.some((node) => inSet(node.selectionSet, 0, new Set()));
}
