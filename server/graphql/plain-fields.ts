/**
 * Plain fields read by graphql-js itself. type-graphql gives every field of an object type a resolver, even one that only
 * reads a property: per field of every item, an object for its middleware chain's arguments and a closure around
 * `root[name]`, on top of what graphql-js allocates. A `{ jobs }` answer executes a few hundred such fields; the sampled
 * allocations of the API under load were 15 % type-graphql's, most of it that wrapper, and garbage collection was a quarter
 * of the server's CPU (issue 14, bench:api).
 *
 * Where the wrapper adds nothing, it goes: a field with no field resolver, no `@Authorized` roles, no middleware and the same
 * name in the schema as in its class is then read as a plain property, by graphql-js's default resolver or inline by the
 * compiled execution (compiled-execution.ts), which awaits only what resolvers return. So a field whose property holds a
 * promise (a connection's lazy `totalCount`) says so with `@Field({ simple: false })` and keeps its resolver. Every other
 * field keeps type-graphql's resolver. type-graphql's own `simpleResolvers` option does the same per class, but it
 * would also drop the role check of a field that has one: this decides per field, from the metadata the build resolved.
 */
import { isObjectType, type GraphQLSchema } from "graphql";
import { getMetadataStorage } from "type-graphql";

/** Removes the wrappers of plain fields from `schema` (built by type-graphql); returns the names of the fields changed. */
export function readPlainFieldsDirectly(schema: GraphQLSchema): string[] {
  const storage = getMetadataStorage();
  const changed: string[] = [];
  for (const objectType of storage.objectTypes) {
    const type = schema.getType(objectType.name);
    if (!isObjectType(type)) continue;
    const fields = type.getFields();
    for (const field of objectType.fields ?? []) {
      const built = fields[field.schemaName];
      if (!built?.resolve) continue;
      if (field.simple === false || field.roles !== undefined || (field.middlewares?.length ?? 0) > 0) continue;
      if (field.name !== field.schemaName) continue;
      // The build's own test for a field resolver (schema-generator.js): one declared for this class and property.
      if (storage.fieldResolvers.some((resolver) => resolver.getObjectType?.() === field.target && resolver.methodName === field.name)) {
        continue;
      }
      built.resolve = undefined;
      changed.push(`${objectType.name}.${field.schemaName}`);
    }
  }
  return changed;
}
