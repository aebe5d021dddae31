import { Field, Int, ObjectType } from "type-graphql";

@ObjectType({ description: "Relay page information." })
export class PageInfo {
  @Field(() => Boolean, { description: "Whether another page follows this one." })
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true, description: "Pass as `after` to get the next page." })
  endCursor!: string | null;
}

/** Builds the Connection and Edge object types of a node type (RunConnection, RestorePointConnection, ...). */
export function connectionTypes<T>(nodeType: new () => T, name: string) {
  @ObjectType(`${name}Edge`, { description: `One ${name} of a page, with its cursor.` })
  class Edge {
    @Field(() => String)
    cursor!: string;

    @Field(() => nodeType)
    node!: T;
  }

  @ObjectType(`${name}Connection`, { description: `A page of ${name}s, newest first.` })
  class Connection {
    @Field(() => [Edge])
    edges!: Edge[];

    @Field(() => [nodeType], { description: "The nodes of the page, without cursors." })
    nodes!: T[];

    @Field(() => PageInfo)
    pageInfo!: PageInfo;

    // A promise, counted when first read (services/pagination.ts): awaited by its resolver, never read as a plain property.
    @Field(() => Int, { description: "How many match the filter, across all pages.", simple: false })
    totalCount!: number;
  }
  return { Edge, Connection };
}
