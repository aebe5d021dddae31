import { defineConfig } from "vitest/config";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { fileURLToPath } from "node:url";

// graphql 16 ships CJS and ESM without an exports map: without this alias vitest loads both and
// graphql-js throws "Duplicate graphql modules".
const graphqlAlias = { graphql: fileURLToPath(new URL("./node_modules/graphql/index.js", import.meta.url)) };

export default defineConfig({
  test: {
    projects: [
      {
        resolve: { alias: graphqlAlias },
        test: {
          name: "server",
          environment: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/dashboard/components/**", "node_modules/**"],
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          pool: "forks",
          maxWorkers: 2,
          // Projects with different worker limits must run as separate groups: the component tests run after.
          sequence: { groupOrder: 0 },
        },
      },
      {
        plugins: [svelte()],
        resolve: {
          alias: { ...graphqlAlias, $lib: fileURLToPath(new URL("./dashboard/src/lib", import.meta.url)) },
          conditions: ["browser"],
        },
        test: {
          name: "dashboard",
          environment: "jsdom",
          include: ["test/dashboard/components/**/*.test.ts"],
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
