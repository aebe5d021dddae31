// The API client is not a component, but it runs in the browser, so it is tested in the dashboard project
// (see the report of the dashboard foundation for moving it to test/dashboard/api/ once the glob allows).
import { describe, expect, it, vi } from "vitest";
import { createApiClient } from "$lib/api/client.js";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import { LoginMutation, MeQuery } from "$lib/api/operations-session.js";

/** A fetch that records requests and answers each with `respond`; the network is the outside world. */
function fakeFetch(respond: () => Response | Promise<Response>) {
  const requests: { url: string; init: RequestInit }[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    requests.push({ url, init });
    return respond();
  }) as typeof globalThis.fetch;
  return { fetch, requests };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

const me = { id: "1", username: "admin", role: "ADMIN" as const };

describe("createApiClient", () => {
  it("POSTs the printed operation as JSON to /graphql with the bearer token, and resolves with data", async () => {
    const { fetch, requests } = fakeFetch(() => json({ data: { me } }));
    const client = createApiClient({ fetch, token: () => "t0ken" });

    await expect(client.request(MeQuery, {})).resolves.toEqual({ me });

    expect(requests).toHaveLength(1);
    const [{ url, init }] = requests as [{ url: string; init: RequestInit }];
    expect(url).toBe("/graphql");
    expect(init.method).toBe("POST");
    expect(init.headers).toMatchObject({ "content-type": "application/json", authorization: "Bearer t0ken" });
    const body = JSON.parse(String(init.body));
    expect(body.operationName).toBe("Me");
    expect(body.query).toMatch(/query Me\s*{\s*me\s*{\s*id\s+username\s+role\s*}\s*}/);
    expect(body.variables).toEqual({});
  });

  it("sends no Authorization header when signed out", async () => {
    const { fetch, requests } = fakeFetch(() => json({ data: { login: { token: "t", user: me } } }));
    const client = createApiClient({ fetch, token: () => null });

    await client.request(LoginMutation, { username: "admin", password: "pw" });

    expect(requests[0]?.init.headers).not.toHaveProperty("authorization");
    expect(JSON.parse(String(requests[0]?.init.body)).variables).toEqual({ username: "admin", password: "pw" });
  });

  it("rejects with the server's message and extensions.code", async () => {
    const { fetch } = fakeFetch(() =>
      json({ errors: [{ message: "Invalid username or password", extensions: { code: "UNAUTHENTICATED" } }] }),
    );
    const onUnauthenticated = vi.fn();
    const client = createApiClient({ fetch, onUnauthenticated });

    const error = await client.request(LoginMutation, { username: "admin", password: "no" }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ message: "Invalid username or password", code: ErrorCode.Unauthenticated });
    expect(onUnauthenticated).not.toHaveBeenCalled(); // no token was sent: a failed sign-in, not an expired session
  });

  it("reports UNAUTHENTICATED on a request that carried a token, so the app can send the user to sign-in", async () => {
    const { fetch } = fakeFetch(() =>
      json({ data: null, errors: [{ message: "Token expired", extensions: { code: "UNAUTHENTICATED" } }] }),
    );
    const onUnauthenticated = vi.fn();
    const client = createApiClient({ fetch, token: () => "old", onUnauthenticated });

    await expect(client.request(MeQuery, {})).rejects.toMatchObject({ code: ErrorCode.Unauthenticated });
    expect(onUnauthenticated).toHaveBeenCalledTimes(1);
  });

  it("reads GraphQL errors from a 400 answer (validation errors)", async () => {
    const { fetch } = fakeFetch(() =>
      json({ errors: [{ message: 'Cannot query field "x"', extensions: { code: "GRAPHQL_VALIDATION_FAILED" } }] }, 400),
    );
    await expect(createApiClient({ fetch }).request(MeQuery, {})).rejects.toMatchObject({
      message: 'Cannot query field "x"',
      code: "GRAPHQL_VALIDATION_FAILED",
    });
  });

  it("rejects with NETWORK_ERROR and a message saying what to check when the server cannot be reached", async () => {
    const { fetch } = fakeFetch(() => Promise.reject(new TypeError("Failed to fetch")));
    const error = await createApiClient({ fetch })
      .request(MeQuery, {})
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCode.Network });
    expect((error as Error).message).toContain("Could not reach the Cairn server (Failed to fetch)");
  });

  it("rejects with BAD_RESPONSE when something other than GraphQL answers", async () => {
    const { fetch } = fakeFetch(
      () => new Response("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway", headers: { "content-type": "text/html" } }),
    );
    const error = await createApiClient({ fetch })
      .request(MeQuery, {})
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCode.BadResponse });
    expect((error as Error).message).toContain("HTTP 502 Bad Gateway with text/html");
  });
});
