/**
 * Plain fields are read by graphql-js's default resolver (server/graphql/plain-fields.ts), and a field that type-graphql
 * must wrap keeps its wrapper: a role check, a field resolver, a middleware, a name of its own in the schema.
 */
import "reflect-metadata";
import { graphql, parse, type GraphQLSchema } from "graphql";
import { Authorized, buildSchema, Field, FieldResolver, Int, ObjectType, Query, Resolver, UseMiddleware } from "type-graphql";
import { beforeAll, describe, expect, it } from "vitest";
import { buildCairnSchema } from "../../server/graphql/build-schema.js";
import { executeCompiled } from "../../server/graphql/compiled-execution.js";
import { readPlainFieldsDirectly } from "../../server/graphql/plain-fields.js";

@ObjectType()
class PlainFieldsShelf {
  @Field(() => String)
  name!: string;

  @Authorized("ADMIN")
  @Field(() => String)
  secret!: string;

  @Field(() => String, { name: "label" })
  title!: string;

  @UseMiddleware(async (_data, next) => `[${await next()}]`)
  @Field(() => String)
  wrapped!: string;

  @Field(() => String)
  computed!: string;

  @Field(() => Int, { simple: false })
  count!: number;
}

@Resolver(() => PlainFieldsShelf)
class PlainFieldsShelfResolver {
  @Query(() => PlainFieldsShelf)
  plainFieldsShelf(): Omit<PlainFieldsShelf, "computed" | "count"> & { count: Promise<number> } {
    return { name: "oak", secret: "key under the mat", title: "Oak shelf", wrapped: "box", count: Promise.resolve(3) };
  }

  @FieldResolver(() => String)
  computed(): string {
    return "computed";
  }
}

describe("plain fields", () => {
  let schema: GraphQLSchema;
  let changed: string[];

  beforeAll(async () => {
    schema = await buildSchema({
      resolvers: [PlainFieldsShelfResolver],
      authChecker: ({ context }) => (context as { admin: boolean }).admin,
      validate: false,
    });
    changed = readPlainFieldsDirectly(schema);
  });

  const fieldsOf = (name: string) =>
    (schema.getType(name) as unknown as { getFields(): Record<string, { resolve?: unknown }> }).getFields();

  it("lose type-graphql's wrapper, and only they do", () => {
    expect(changed).toEqual(["PlainFieldsShelf.name"]);
    const fields = fieldsOf("PlainFieldsShelf");
    expect(fields.name.resolve).toBeUndefined();
    for (const kept of ["secret", "label", "wrapped", "computed", "count"]) expect(fields[kept].resolve, kept).toBeTypeOf("function");
  });

  it("answer as before, role checks and middlewares included", async () => {
    const asViewer = await graphql({
      schema,
      source: "{ plainFieldsShelf { name label wrapped computed secret } }",
      contextValue: { admin: false },
    });
    expect(asViewer.errors?.map((error) => error.path?.join("."))).toEqual(["plainFieldsShelf.secret"]);
    const asAdmin = await graphql({
      schema,
      source: "{ plainFieldsShelf { name label wrapped computed secret } }",
      contextValue: { admin: true },
    });
    expect(asAdmin).toEqual({
      data: { plainFieldsShelf: { name: "oak", label: "Oak shelf", wrapped: "[box]", computed: "computed", secret: "key under the mat" } },
    });
  });

  it("include no field whose property holds a promise: it is awaited, by graphql-js and compiled alike", async () => {
    const document = parse("{ plainFieldsShelf { name count } }");
    const expected = { data: { plainFieldsShelf: { name: "oak", count: 3 } } };
    expect(await graphql({ schema, source: "{ plainFieldsShelf { name count } }", contextValue: { admin: false } })).toEqual(expected);
    expect(await executeCompiled({ schema, document, contextValue: { admin: false } })).toEqual(expected);
  });

  it("are most of Cairn's fields, and its field resolvers keep theirs", async () => {
    const cairn = await buildCairnSchema();
    const job = (cairn.getType("Job") as unknown as { getFields(): Record<string, { resolve?: unknown }> }).getFields();
    expect(job.name.resolve).toBeUndefined();
    expect(job.mode.resolve).toBeUndefined();
    expect(job.lastRun.resolve).toBeTypeOf("function");
    expect(job.remotes.resolve).toBeTypeOf("function");
    const runs = (cairn.getType("RunConnection") as unknown as { getFields(): Record<string, { resolve?: unknown }> }).getFields();
    expect(runs.nodes.resolve).toBeUndefined();
    expect(runs.totalCount.resolve).toBeTypeOf("function");
  });
});
