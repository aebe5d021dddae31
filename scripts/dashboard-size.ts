/**
 * Checks the dashboard's JavaScript budget: the gzipped size of every `.js` file in `dashboard/build`
 * (what a browser may download), added up, must stay at or under 300 KB (issue 7).
 *
 * Usage: `tsx scripts/dashboard-size.ts [build folder] [--budget KB]`, run by `npm run build:dashboard`.
 * Prints the largest files and the total; exits 1 over the budget, 2 when there is no build to measure.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";

/** @default 300 KB, from issue 7 */
export const DEFAULT_BUDGET_BYTES = 300 * 1024;

export interface FileSize {
  path: string;
  bytes: number;
  gzipBytes: number;
}

/** The raw and gzipped (level 9, as a server would send it) size of every `.js` file under `folder`. */
export function measureJavaScript(folder: string): FileSize[] {
  return readdirSync(folder, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".js"))
    .map((entry) => {
      const file = join(entry.parentPath, entry.name);
      const content = readFileSync(file);
      return { path: relative(folder, file), bytes: content.length, gzipBytes: gzipSync(content, { level: 9 }).length };
    })
    .sort((a, b) => b.gzipBytes - a.gzipBytes);
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

function main(args: string[]): number {
  const { values, positionals } = parseArgs({ args, options: { budget: { type: "string" } }, allowPositionals: true });
  const budget = values.budget === undefined ? DEFAULT_BUDGET_BYTES : Number(values.budget) * 1024;
  if (!(budget > 0)) throw new Error(`--budget takes a number of KB, got ${values.budget}`);
  const folder = positionals[0] ?? fileURLToPath(new URL("../dashboard/build", import.meta.url));

  let files: FileSize[];
  try {
    files = measureJavaScript(folder);
  } catch (error) {
    console.error(`dashboard-size: cannot read ${folder} (${(error as Error).message}); run npm run build:dashboard first.`);
    return 2;
  }
  if (files.length === 0) {
    console.error(`dashboard-size: no .js file under ${folder}; run npm run build:dashboard first.`);
    return 2;
  }

  const total = files.reduce((sum, file) => sum + file.gzipBytes, 0);
  const raw = files.reduce((sum, file) => sum + file.bytes, 0);
  for (const file of files.slice(0, 5)) console.log(`  ${kb(file.gzipBytes).padStart(9)}  ${file.path}`);
  const verdict = total <= budget ? "within" : "OVER";
  console.log(`dashboard JavaScript: ${kb(total)} gzipped (${kb(raw)} raw) in ${files.length} files, ${verdict} the ${kb(budget)} budget`);
  return total <= budget ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
