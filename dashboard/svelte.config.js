import adapter from "@sveltejs/adapter-static";
import { vitePreprocess } from "@sveltejs/vite-plugin-svelte";

/**
 * The dashboard is a static single-page app: every route is prerendered as an empty shell (`ssr = false`
 * in the root layout) and `200.html` is the fallback the Cairn server sends for any other path.
 * @type {import("@sveltejs/kit").Config}
 */
const config = {
  preprocess: vitePreprocess(),
  compilerOptions: { runes: true },
  kit: {
    adapter: adapter({ pages: "build", assets: "build", fallback: "200.html", strict: true }),
    typescript: {
      // The component tests live outside dashboard/ (test/dashboard/) but are type-checked with the app.
      config(tsconfig) {
        tsconfig.include.push("../../test/dashboard/**/*.ts");
      },
    },
  },
};

export default config;
