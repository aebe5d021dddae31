/**
 * Operations executed by their compiled function (server/graphql/compiled-execution.ts, graphql-jit) answer exactly as
 * graphql-js's `execute` does: the same data, and the same errors (message, locations, path, extensions, and the value a
 * resolver threw, which the API's error mapping reads), on the cases where two executors could differ.
 */
import {
  execute,
  GraphQLBoolean,
  GraphQLEnumType,
  GraphQLError,
  GraphQLID,
  GraphQLInputObjectType,
  GraphQLInt,
  GraphQLList,
  GraphQLNonNull,
  GraphQLObjectType,
  GraphQLSchema,
  GraphQLString,
  parse,
  type ExecutionResult,
  validate,
} from "graphql";
import { GraphQLDateTimeISO } from "graphql-scalars";
import { describe, expect, it } from "vitest";
import { executeCompiled } from "../../server/graphql/compiled-execution.js";

class ShelfError extends Error {
  readonly code = "NOT_FOUND";
}

const Color = new GraphQLEnumType({ name: "Color", values: { RED: { value: "red" }, GREEN: { value: "green" } } });

const Book = new GraphQLObjectType<{ id: string; title: string | null; color: string; at: Date }>({
  name: "Book",
  fields: {
    id: { type: new GraphQLNonNull(GraphQLID) },
    title: { type: new GraphQLNonNull(GraphQLString) },
    color: { type: Color },
    at: { type: GraphQLDateTimeISO },
    pages: { type: GraphQLInt, resolve: async (book) => book.id.length * 100 },
    shelf: { type: GraphQLString, resolve: (_book, _args, context: { shelf: string }) => context.shelf },
  },
});

const at = new Date(Date.UTC(2026, 11, 4, 10, 0, 0));
const books = [
  { id: "1", title: "Dune", color: "red", at },
  { id: "22", title: null, color: "green", at },
];

const Filter = new GraphQLInputObjectType({
  name: "Filter",
  fields: {
    text: { type: GraphQLString },
    inner: { type: new GraphQLInputObjectType({ name: "Inner", fields: { a: { type: GraphQLString } } }) },
  },
});

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: "Query",
    fields: {
      books: { type: new GraphQLList(Book), resolve: () => books },
      strictBooks: { type: new GraphQLNonNull(new GraphQLList(new GraphQLNonNull(Book))), resolve: () => books },
      book: {
        type: Book,
        args: { id: { type: new GraphQLNonNull(GraphQLID) }, color: { type: Color } },
        resolve: (_root, args: { id: string; color?: string }) => {
          const book = books.find((b) => b.id === args.id && (!args.color || b.color === args.color));
          if (!book) throw new ShelfError(`No book ${args.id}.`);
          return book;
        },
      },
      asyncFailure: {
        type: GraphQLString,
        resolve: async () => {
          throw new ShelfError("Gone.");
        },
      },
      refused: {
        type: GraphQLString,
        resolve: () => {
          throw new GraphQLError("Sign in first.", { extensions: { code: "UNAUTHENTICATED" } });
        },
      },
      echo: {
        type: GraphQLString,
        args: { filter: { type: Filter }, x: { type: GraphQLString } },
        resolve: (_root, args) => JSON.stringify(args),
      },
      after: {
        type: GraphQLBoolean,
        args: { when: { type: GraphQLDateTimeISO } },
        resolve: (_root, args: { when?: Date }) => args.when! < at,
      },
    },
  }),
});

/** The result as a client sees it, and what the API's error mapping reads of each error. */
function observed(result: ExecutionResult) {
  return {
    json: JSON.parse(JSON.stringify(result)),
    errors: (result.errors ?? []).map((error) => ({
      graphqlError: Object.getPrototypeOf(error) === GraphQLError.prototype,
      extensions: error.extensions,
      thrown: error.originalError?.constructor.name,
      code: (error.originalError as { code?: string } | undefined)?.code,
    })),
  };
}

async function both(source: string, variableValues?: Record<string, unknown>, operationName?: string) {
  const document = parse(source);
  // Apollo and graphql-ws validate before executing: so do these cases, or they would compare two refusals of a typo.
  expect(validate(schema, document)).toEqual([]);
  const args = { schema, document, variableValues, operationName, contextValue: { shelf: "top" } };
  return { compiled: observed(await executeCompiled(args)), graphqlJs: observed(await execute(args)) };
}

describe("compiled execution", () => {
  it.each([
    [
      "lists, aliases, fragments, directives and async fields",
      "{ books { id name: title pages ...F @include(if: true) } } fragment F on Book { color at shelf }",
    ],
    ["a null in a non-null field, up to the nearest nullable parent", "{ books { id title } }"],
    ["a null propagating to the root", "{ strictBooks { title } }"],
    ["a thrown error with its value kept", '{ book(id: "9") { id } }'],
    ["an async thrown error", "{ asyncFailure }"],
    ["a GraphQLError a resolver throws, with its extensions", "{ refused }"],
    ["introspection and __typename", '{ __typename __schema { queryType { name } } __type(name: "Color") { enumValues { name } } }'],
  ])("answers %s as graphql-js does", async (_name, source) => {
    const { compiled, graphqlJs } = await both(source);
    expect(compiled).toEqual(graphqlJs);
  });

  it.each([
    ["a missing required variable", "query($id: ID!) { book(id: $id) { id } }", {}],
    ["a variable of the wrong type", "query($id: ID!) { book(id: $id) { id } }", { id: { nested: true } }],
    ["an enum value that does not exist", 'query($c: Color) { book(id: "1", color: $c) { id } }', { c: "BLUE" }],
    ["an enum value as a variable", 'query($c: Color) { book(id: "1", color: $c) { id color } }', { c: "RED" }],
    ["a custom scalar that does not parse", "query($w: DateTimeISO) { after(when: $w) }", { w: "yesterday" }],
    ["a custom scalar that parses", "query($w: DateTimeISO) { after(when: $w) }", { w: "2026-01-01T00:00:00Z" }],
    // Left out, the field is not in the argument at all (to an update, "leave it"), which is not the same as null ("clear it").
    ["a variable left out inside an input object", "query($s: String) { echo(filter: { text: $s, inner: { a: $s } }) }", {}],
    ["a variable given as null inside an input object", "query($s: String) { echo(filter: { text: $s }) }", { s: null }],
    ["a variable left out as an argument", "query($s: String) { echo(x: $s) }", {}],
  ])("refuses or takes %s as graphql-js does", async (_name, source, variables) => {
    const { compiled, graphqlJs } = await both(source, variables);
    expect(compiled).toEqual(graphqlJs);
  });

  it("answers an unknown operation name as graphql-js does", async () => {
    const { compiled, graphqlJs } = await both("query A { books { id } } query B { books { title } }", {}, "C");
    expect(compiled).toEqual(graphqlJs);
  });
});
