/**
 * A fake API client for component tests: each request is recorded with its operation's name and variables and answered by
 * the handler registered for that operation (a handler may throw an ApiError, as the server's refusal).
 */
import type { ApiClient } from "$lib/api/client.js";
import { ApiError, ErrorCode } from "$lib/api/errors.js";

type Handler = (variables: Record<string, unknown>) => unknown;

export interface FakeApi {
  client: ApiClient;
  calls: { operation: string; variables: Record<string, unknown> }[];
  /** The variables of every call of `operation`. */
  callsOf(operation: string): Record<string, unknown>[];
}

function operationName(document: unknown): string {
  const definitions = (document as { definitions: { kind: string; name?: { value: string } }[] }).definitions;
  return definitions.find((d) => d.kind === "OperationDefinition")?.name?.value ?? "?";
}

export function fakeApi(handlers: Record<string, Handler>): FakeApi {
  const calls: FakeApi["calls"] = [];
  const client: ApiClient = {
    request: async (document, variables) => {
      const operation = operationName(document);
      // A snapshot: the component may keep (and later change) the object it sent.
      const sent = JSON.parse(JSON.stringify(variables ?? {})) as Record<string, unknown>;
      calls.push({ operation, variables: sent });
      const handler = handlers[operation];
      if (!handler) throw new ApiError(`The fake API has no ${operation}`, ErrorCode.InternalServerError);
      return (await handler(sent)) as never;
    },
  };
  return { client, calls, callsOf: (operation) => calls.filter((c) => c.operation === operation).map((c) => c.variables) };
}

/** A BAD_USER_INPUT refusal naming `field`, as the server sends it. */
export function badInput(field: string, message: string): ApiError {
  return new ApiError(`${field}: ${message}`, ErrorCode.BadUserInput, [
    { message: `${field}: ${message}`, extensions: { code: ErrorCode.BadUserInput, field } },
  ]);
}

/** Types into an input (or picks in a select) as a person does: the value, then the events Svelte's bindings listen to. */
export function type(element: HTMLElement, value: string): void {
  (element as HTMLInputElement).value = value;
  element.dispatchEvent(new Event("input", { bubbles: true }));
  element.dispatchEvent(new Event("change", { bubbles: true }));
}

/** Waits for the element `selector` finds (a table row by its data attribute), and returns it. */
export async function findElement(selector: string): Promise<HTMLElement> {
  const { waitFor } = await import("@testing-library/svelte");
  return waitFor(() => {
    const element = document.querySelector<HTMLElement>(selector);
    if (!element) throw new Error(`Nothing matches ${selector} yet`);
    return element;
  });
}
