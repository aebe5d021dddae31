import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { graphql } from "../support/graphql.js";

describe("a Cairn server with the lab", () => {
  let server: TestCairn;
  beforeAll(async () => {
    server = await startTestCairn({ lab: true });
  });
  afterAll(() => server?.stop());

  it("shows the lab pool, its VMs and SRs, and the local remote to a signed-in admin", async () => {
    const token = await server.login();
    const result = await server.graphql(
      graphql("{ me { username role } pools { name status vms { name } srs { name } } remotes { name kind } }"),
      {},
      token,
    );
    expect(result.errors).toBeUndefined();
    expect(result.data!.me).toEqual({ username: "admin", role: "ADMIN" });
    expect(result.data!.pools[0].status).toBe("CONNECTED");
    expect(result.data!.pools[0].vms.length).toBeGreaterThan(2);
    expect(result.data!.remotes).toEqual([{ name: "local", kind: "LOCAL" }]);
  });
});
