/**
 * The lab's upload handlers share no code with Cairn's formats (behaviour 6 of issue 13): an XVA or VHD that Cairn gets
 * wrong must fail in the lab as on a pool, not be read back by the same misunderstanding. Follows every relative import
 * (static, type-only, dynamic) from the handlers, file by file. `npm run check:layers` enforces the same rule.
 */
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const server = resolve(import.meta.dirname, "../../server");

function importGraph(start: string): Map<string, string> {
  const via = new Map<string, string>([[start, start]]);
  const queue = [start];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const text = readFileSync(join(server, file), "utf8");
    for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["'](\.[^"']+)["']/g)) {
      const target = relative(server, resolve(dirname(join(server, file)), match[1])).replace(/\.js$/, ".ts");
      if (via.has(target)) continue;
      via.set(target, `${via.get(file)} -> ${target}`);
      queue.push(target);
    }
  }
  return via;
}

describe("the lab's upload handlers", () => {
  for (const handler of ["lab/import-xva-handler.ts", "lab/import-raw-vdi-handler.ts"]) {
    it(`${handler} reaches no file of server/formats`, () => {
      const graph = importGraph(handler);
      expect(graph.has("lab/lab-xva-reader.ts") || graph.has("lab/lab-vhd-reader.ts")).toBe(true);
      expect([...graph.entries()].filter(([file]) => file.startsWith("formats/")).map(([, chain]) => chain)).toEqual([]);
    });
  }
});
