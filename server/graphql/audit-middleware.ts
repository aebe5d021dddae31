/**
 * Every root Mutation field, over HTTP and graphql-ws alike, leaves one audit entry (services/audit-service.ts) when it ends:
 * who (user, token), what (the field's name), on which object, from where, and how it ended.
 *
 * It wraps the Mutation fields of the built schema ({@link auditMutations}) rather than sitting in type-graphql's
 * `globalMiddlewares`: type-graphql runs `@Authorized` before every other middleware, so a global one never sees a mutation
 * refused for its role or for a missing sign-in, and those attempts are what an auditor looks for first.
 */
import { defaultFieldResolver, getNamedType, isObjectType, type GraphQLResolveInfo, type GraphQLSchema } from "graphql";
import type { MiddlewareFn } from "type-graphql";
import { CairnError } from "../errors.js";
import type { NamedObjectType } from "../services/audit-service.js";
import type { GraphQLContext } from "./context.js";
import { apiCodeOf } from "./format-error.js";

/** Wraps each Mutation field's resolver in {@link AuditMiddleware}; returns the same schema. */
export function auditMutations(schema: GraphQLSchema): GraphQLSchema {
  const mutation = schema.getMutationType();
  for (const field of Object.values(mutation?.getFields() ?? {})) {
    const resolve = field.resolve ?? defaultFieldResolver;
    field.resolve = (root, args, context: GraphQLContext, info) =>
      AuditMiddleware({ root, args, context, info }, async () => resolve(root, args, context, info));
  }
  return schema;
}

/**
 * Records the mutation after it ends, and answers what the mutation answered: a failed audit write is logged by the service,
 * never turned into the mutation's failure. The write is awaited, so the entry is there when the client has its answer.
 */
export const AuditMiddleware: MiddlewareFn<GraphQLContext> = async ({ args, context, info }, next) => {
  if (info.parentType !== info.schema.getMutationType()) return next();
  const audit = context.services.audit;
  const principal = context.principal;
  const action = info.fieldName;
  const target = targetOf(action, args, context, info);
  // Before the mutation: a removed object's name cannot be read afterwards.
  const lookedUpName = target.lookup && target.id && !target.fromResult ? await audit.objectName(target.lookup, target.id) : null;
  const tokenName = principal ? await audit.tokenName(principal.tokenId, principal.tokenKind).catch(() => null) : null;
  const base = {
    userId: principal?.userId ?? null,
    username: principal?.username ?? (action === "login" ? text(args.username) : null) ?? null,
    tokenId: principal?.tokenId ?? null,
    tokenKind: principal?.tokenKind ?? null,
    tokenName,
    clientAddress: context.clientAddress ?? null,
    transport: context.transport,
    action,
    objectType: target.type ?? null,
    arguments: args,
  };
  let result: unknown;
  try {
    result = await next();
  } catch (error) {
    await audit.record({
      ...base,
      objectId: target.id ?? null,
      objectName: target.name ?? lookedUpName,
      success: false,
      errorCode: apiCodeOf(error),
      // Only a message written for the client: anything else may hold internal text (SQL, paths).
      message: error instanceof CairnError ? error.message : null,
    });
    throw error;
  }
  const answered = target.fromResult ? resultObject(result, info) : null;
  const signedIn = action === "login" ? resultObject(result, info) : null;
  await audit.record({
    ...base,
    userId: base.userId ?? text(signedIn?.value.id) ?? null,
    username: base.username ?? text(signedIn?.value.username) ?? null,
    objectId: target.id ?? text(answered?.value.id) ?? null,
    objectName: text(answered?.value.name) ?? text(answered?.value.username) ?? text(answered?.value.vmName) ?? target.name ?? lookedUpName,
    success: true,
  });
  return result;
};

type Args = Record<string, unknown>;

/** What a mutation acts on when its name and arguments alone do not say it (the answer is a Run, the object is elsewhere). */
interface TargetRule {
  type: string;
  id?: (args: Args, context: GraphQLContext) => unknown;
  /** The object's name from the arguments; omitted: `input.name` or `name` (`username` for a User). */
  name?: (args: Args) => unknown;
}

const RESTORE_POINT_OF_INPUT: TargetRule = { type: "RestorePoint", id: (args) => field(args.input, "restorePointId"), name: () => null };

const TARGETS: Record<string, TargetRule> = {
  login: { type: "User", id: () => null, name: (args) => args.username },
  logout: { type: "ApiToken", id: (_args, context) => context.principal?.tokenId },
  // The caller's own user: its name says nothing of it.
  changePassword: { type: "User", id: (_args, context) => context.principal?.userId },
  // input.name is the new VM's name, not the restore point's.
  restoreVm: RESTORE_POINT_OF_INPUT,
  restoreFiles: RESTORE_POINT_OF_INPUT,
};

/** Object types whose name the audit service can read by id. */
const NAMED: ReadonlySet<string> = new Set<NamedObjectType>(["Job", "Pool", "Remote", "RestorePoint", "ApiToken", "User"]);

/** Answers that stand for another object type. */
const RESULT_ALIASES: Record<string, string> = { ApiTokenSecret: "ApiToken", AuthPayload: "User" };

/** Id arguments and the type each names, for a mutation whose name and answer say nothing of its object. */
const ID_ARGUMENTS: [string, string][] = [
  ["jobId", "Job"],
  ["poolId", "Pool"],
  ["remoteId", "Remote"],
  ["restorePointId", "RestorePoint"],
  ["runId", "Run"],
  ["userId", "User"],
  ["tokenId", "ApiToken"],
];

interface Target {
  type?: string;
  id?: string;
  name?: string;
  /** The answer is the object itself (createJob answers the Job): its id and name are read from it. */
  fromResult: boolean;
  /** The type to look the name up as, when neither the arguments nor the answer carry it. */
  lookup?: NamedObjectType;
}

function targetOf(action: string, args: Args, context: GraphQLContext, info: GraphQLResolveInfo): Target {
  const rule = TARGETS[action];
  const answerType = answerTypeOf(info);
  let type = rule?.type ?? typeInName(action, info.schema) ?? answerType;
  let id = text(rule?.id ? rule.id(args, context) : undefined);
  if (!rule?.id && type) {
    const key = `${type[0].toLowerCase()}${type.slice(1)}Id`;
    id = text(args.id) ?? text(args[key]) ?? text(field(args.input, "id")) ?? text(field(args.input, key));
  }
  if (!rule && !type) {
    for (const [key, keyType] of ID_ARGUMENTS) {
      const value = text(args[key]) ?? text(field(args.input, key));
      if (value) {
        [type, id] = [keyType, value];
        break;
      }
    }
  }
  const name = rule?.name
    ? text(rule.name(args))
    : (text(field(args.input, "name")) ??
      text(args.name) ??
      (type === "User" ? (text(field(args.input, "username")) ?? text(args.username)) : undefined));
  const fromResult = type !== undefined && answerType === type;
  return { type, id, name, fromResult, lookup: type && NAMED.has(type) && !name ? (type as NamedObjectType) : undefined };
}

/** The object type a mutation answers with (an alias resolved), or undefined for a scalar answer. */
function answerTypeOf(info: GraphQLResolveInfo): string | undefined {
  const named = getNamedType(info.returnType);
  if (!isObjectType(named)) return undefined;
  return RESULT_ALIASES[named.name] ?? named.name;
}

/** The answer as the object it stands for: login's AuthPayload is its user, createApiToken's secret is the token. */
function resultObject(result: unknown, info: GraphQLResolveInfo): { value: Record<string, unknown> } | null {
  if (!isRecord(result)) return null;
  if (getNamedType(info.returnType).name === "AuthPayload") return isRecord(result.user) ? { value: result.user } : null;
  return { value: result };
}

/**
 * The object type a mutation's name speaks of: the longest run of its capitalised words that is an object type with an id
 * (removeRestorePoint: RestorePoint; resetUserPassword: User).
 */
function typeInName(action: string, schema: GraphQLSchema): string | undefined {
  const words = action.split(/(?=[A-Z])/).slice(1);
  for (let length = words.length; length > 0; length--) {
    for (let start = 0; start + length <= words.length; start++) {
      const candidate = words.slice(start, start + length).join("");
      const type = schema.getType(candidate);
      if (isObjectType(type) && "id" in type.getFields()) return candidate;
    }
  }
  return undefined;
}

function field(value: unknown, key: string): unknown {
  return isRecord(value) ? value[key] : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function text(value: unknown): string | undefined {
  if (typeof value === "string" && value.length > 0) return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}
