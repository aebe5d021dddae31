/**
 * graphql-js's `subscribe`, with each event's execution shared between the subscriptions that would compute the same
 * answer: the same operation, variables and role, on the same event object (the event bus hands one object to every
 * subscriber of the process). A thousand dashboards following one run cost one execution per event, not a thousand; what
 * stays per subscriber is the message itself (its id) and the socket write.
 *
 * The answer of a subscription's fields depends only on the event, the operation, its variables and the caller's role
 * (`@Authorized` works by role; no subscribed type has a field that reads who the caller is), so sharing never shows one
 * caller what another was allowed to see. The role is read at each event: a connection whose role went down stops sharing
 * with its former peers at once.
 */
import { createSourceEventStream, execute, print, type ExecutionArgs, type ExecutionResult } from "graphql";
import type { GraphQLContext } from "./context.js";

/** Documents as text, by document: subscribers of one query share its document (operation-rules.ts keeps it), printed once. */
const printed = new WeakMap<object, string>();
function printedOnce(document: ExecutionArgs["document"]): string {
  let text = printed.get(document);
  if (text === undefined) {
    text = print(document);
    printed.set(document, text);
  }
  return text;
}

/** The executions of an event, by operation key; forgotten with the event. */
const executions = new WeakMap<object, Map<string, Promise<ExecutionResult> | ExecutionResult>>();

export async function subscribeShared(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterable(source)) return source;
  // Per subscription, once: printing the document per event would cost more than it saves.
  const operationKey = `${args.operationName ?? ""}\n${JSON.stringify(args.variableValues ?? {})}\n${printedOnce(args.document)}`;
  const context = args.contextValue as GraphQLContext;
  // The key of the current role, made when the role changes: a new string per event would be hashed whole per subscriber.
  let keyRole: string | undefined;
  let key = "";
  const run = (event: unknown): Promise<ExecutionResult> | ExecutionResult => {
    if (event === null || typeof event !== "object") return execute({ ...args, rootValue: event });
    const role = context.principal?.role ?? "";
    if (role !== keyRole) {
      keyRole = role;
      key = `${role}\n${operationKey}`;
    }
    let byKey = executions.get(event);
    if (!byKey) {
      byKey = new Map();
      executions.set(event, byKey);
    }
    let result = byKey.get(key);
    if (!result) {
      result = execute({ ...args, rootValue: event });
      byKey.set(key, result);
    }
    return result;
  };
  const iterator = source[Symbol.asyncIterator]();
  const generator: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      const step = await iterator.next();
      if (step.done) return { value: undefined, done: true };
      return { value: await run(step.value), done: false };
    },
    async return() {
      await iterator.return?.();
      return { value: undefined, done: true };
    },
    async throw(error: unknown) {
      await iterator.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  return generator;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}
