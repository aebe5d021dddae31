import { sveltekit } from "@sveltejs/kit/vite";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [sveltekit()],
  server: {
    // `vite dev` in dashboard/ talks to a Cairn server started with `npm start` (default port 4000, server/config.ts).
    proxy: { "/graphql": { target: process.env.CAIRN_URL ?? "http://127.0.0.1:4000", ws: true } },
  },
});
