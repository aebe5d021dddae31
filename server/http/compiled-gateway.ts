/**
 * Apollo Server 4 and 5 have no option for another executor than graphql-js; the one hook they keep is the gateway
 * interface (a schema and an executor, meant for federation, documented as where a custom executor now goes). This
 * "gateway" serves our own schema, unchanged, and executes each request with its compiled function
 * (graphql/compiled-execution.ts). Parsing, validation, the document cache, plugins and error formatting stay Apollo's.
 */
import type { GatewayExecutor, GatewayInterface } from "@apollo/server-gateway-interface";
import type { GraphQLSchema } from "graphql";
import { executeCompiled } from "../graphql/compiled-execution.js";

export function compiledGateway(schema: GraphQLSchema): GatewayInterface {
  const executor: GatewayExecutor = async (request) =>
    executeCompiled({
      schema,
      document: request.document,
      // The name the client sent: the context's own `operationName` is the one Apollo resolved (null when none matched).
      operationName: request.request.operationName,
      variableValues: request.request.variables,
      contextValue: request.context,
    });
  return {
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: "" });
      return () => undefined;
    },
    load: async () => ({ executor }),
    stop: async () => undefined,
  };
}
