/** The executable schema, built from the resolvers. `npm run schema` prints it into schema.graphql. */
import "reflect-metadata";
import "./types/enums.js";
import type { GraphQLSchema } from "graphql";
import { createPubSub } from "@graphql-yoga/subscription";
import { buildSchema } from "type-graphql";
import { auditMutations } from "./audit-middleware.js";
import { authChecker } from "./auth-checker.js";
import { readPlainFieldsDirectly } from "./plain-fields.js";
import { AuditResolver } from "./resolvers/audit.resolver.js";
import { AuthResolver } from "./resolvers/auth.resolver.js";
import { JobResolver } from "./resolvers/jobs.resolver.js";
import { MetadataBackupResolver } from "./resolvers/metadata.resolver.js";
import { PoolResolver, SrResolver, VmResolver } from "./resolvers/pools.resolver.js";
import { RemoteResolver } from "./resolvers/remotes.resolver.js";
import { RestoreResolver } from "./resolvers/restore.resolver.js";
import { RunResolver } from "./resolvers/runs.resolver.js";
import { StatsResolver } from "./resolvers/stats.resolver.js";
import { UsersResolver } from "./resolvers/users.resolver.js";

export async function buildCairnSchema(): Promise<GraphQLSchema> {
  const schema = await buildSchema({
    resolvers: [
      AuthResolver,
      UsersResolver,
      PoolResolver,
      VmResolver,
      SrResolver,
      RemoteResolver,
      JobResolver,
      RunResolver,
      RestoreResolver,
      StatsResolver,
      AuditResolver,
      MetadataBackupResolver,
    ],
    authChecker,
    // Inputs are validated by the services, which name the faulty field; class-validator is not used.
    validate: false,
    emitSchemaFile: false,
    // type-graphql insists on a pubSub; ours are unused: each subscription has its own `subscribe` over the event bus
    // (server/events), which crosses processes through Postgres.
    pubSub: createPubSub(),
  });
  readPlainFieldsDirectly(schema);
  // Every mutation, refused or not, leaves an audit entry (see audit-middleware.ts for why this is not a global middleware).
  return auditMutations(schema);
}
