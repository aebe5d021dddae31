/**
 * The import rule of server/: layers only point down (docs/ARCHITECTURE.md). Reads every import of every server/**\/*.ts
 * (static `import` and `export ... from`, `import type`, `import("...")` in code and in types, `require("...")`), resolves the
 * relative ones, maps both ends to their unit (a folder, an engine subfolder, or a root file) and fails when
 *   - a unit imports a unit of a higher layer, or another unit of its own layer;
 *   - a unit imports something its row does not allow (`only`), or a unit that only some units may import (`importedOnlyBy`);
 *   - the units import each other in a circle (reported with the imports that close it);
 *   - a file belongs to no unit of the table, or imports a file outside server/.
 * Package imports (`node:fs`, `xen-api`...) are not checked. Run: `npm run check:layers` (also part of `npm test`).
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

interface Unit {
  /** A top-level folder (`db`), an engine subfolder (`engine/backup`), a root file (`app.ts`), or `engine/*.ts`: engine's root files. */
  name: string;
  /** When set, the only units this one may import (besides itself), whatever their layer. */
  only?: string[];
  /** When set, the only units that may import this one. */
  importedOnlyBy?: string[];
}

/**
 * The layers, top to bottom, in the order of docs/ARCHITECTURE.md: a unit may import the units of the layers below its own,
 * not those of its own layer (they are siblings) nor above. Keep this table and the document's picture in step.
 */
const LAYERS: Unit[][] = [
  [{ name: "main.ts" }],
  [{ name: "app.ts" }],
  // The lab is a test tool (a simulated XAPI pool): wired in by app.ts (LAB=on) only, and sharing nothing with Cairn but the
  // disk formats, so that a mistake in Cairn's XAPI code is not mirrored by the simulator it is tested against.
  [{ name: "lab", only: ["formats"], importedOnlyBy: ["app.ts"] }],
  [{ name: "http" }],
  [{ name: "graphql" }],
  [{ name: "services" }, { name: "reports" }],
  [{ name: "scheduler" }],
  [{ name: "file-restore" }],
  [{ name: "runs" }],
  [{ name: "engine/backup-executor.ts" }],
  // Mirror jobs copy restore points between remotes, then health-check the copy: above health-check/.
  [{ name: "engine/mirror" }],
  [{ name: "engine/cleanup" }, { name: "engine/health-check" }, { name: "engine/verify" }, { name: "engine/metadata" }],
  [{ name: "engine/replication" }],
  [{ name: "engine/restore" }],
  [{ name: "engine/restore-points" }],
  [{ name: "engine/backup" }],
  [{ name: "engine/writers" }],
  [{ name: "engine/*.ts" }],
  [{ name: "xapi" }],
  [{ name: "repository" }, { name: "events" }, { name: "security" }, { name: "streams" }],
  [{ name: "db" }],
  // formats/ and remotes/ know nothing of the domain: bytes and files only.
  [
    { name: "formats", only: ["errors.ts"] },
    { name: "remotes", only: ["errors.ts"] },
  ],
  [{ name: "domain" }, { name: "log.ts" }],
  [{ name: "config.ts" }],
  [{ name: "errors.ts" }],
];

const DOC = "see docs/ARCHITECTURE.md";
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const serverDir = join(root, "server");
/** Generated code (Prisma's client) belongs to its folder's unit but is not read. */
const SKIPPED_FOLDERS = new Set([join(serverDir, "db", "generated")]);

const layerOf = new Map<string, number>();
const unitByName = new Map<string, Unit>();
LAYERS.forEach((layer, index) => {
  for (const unit of layer) {
    if (unitByName.has(unit.name)) throw new Error(`check-layers: ${unit.name} is twice in the layer table`);
    layerOf.set(unit.name, index);
    unitByName.set(unit.name, unit);
  }
});
for (const unit of unitByName.values()) {
  for (const name of [...(unit.only ?? []), ...(unit.importedOnlyBy ?? [])]) {
    if (!unitByName.has(name)) throw new Error(`check-layers: ${unit.name} names ${name}, which is not in the layer table`);
  }
}

/** The unit of a file of server/ (a path relative to server/, with `/`), or undefined when the table has none. */
function unitOf(path: string): string | undefined {
  const parts = path.split("/");
  let name: string;
  if (parts.length === 1) name = parts[0];
  else if (parts[0] === "engine" && parts.length === 2) name = unitByName.has(path) ? path : "engine/*.ts";
  else if (parts[0] === "engine") name = `engine/${parts[1]}`;
  else name = parts[0];
  return unitByName.has(name) ? name : undefined;
}

function listSources(dir: string, into: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_FOLDERS.has(path) && entry.name !== "node_modules") listSources(path, into);
    } else if (entry.isFile() && entry.name.endsWith(".ts")) {
      into.push(path);
    }
  }
  return into.sort();
}

interface ImportSite {
  specifier: string;
  line: number;
}

/** Every module specifier a file names: static imports and re-exports, `import x = require()`, `import()`, `require()`. */
function importsOf(file: string): ImportSite[] {
  const text = readFileSync(file, "utf8");
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const sites: ImportSite[] = [];
  const add = (node: ts.Node | undefined) => {
    if (node && ts.isStringLiteralLike(node)) {
      sites.push({ specifier: node.text, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1 });
    }
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    else if (ts.isCallExpression(node) && node.arguments.length > 0) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === "require")) add(node.arguments[0]);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return sites;
}

/** The file a relative specifier names (`./x.js` is `./x.ts` in the sources), relative to server/ with `/`; null if outside. */
function resolveRelative(from: string, specifier: string): string | null {
  const target = resolve(dirname(from), specifier).replace(/\.(m|c)?js$/, ".$1ts");
  const path = relative(serverDir, target);
  if (path.startsWith("..") || path === "") return null;
  return path.split(sep).join("/");
}

/**
 * Files whose whole import graph (followed file by file) must stay out of some folder. The lab's upload handlers read what
 * Cairn sends with their own readers, written from XAPI's import code: were they to reach Cairn's format code, a format
 * mistake of Cairn's would pass in the lab and fail on a pool (server/lab/README.md, "Uploads").
 */
const INDEPENDENT: { files: string[]; mayNotReach: string; why: string }[] = [
  {
    files: ["lab/import-xva-handler.ts", "lab/import-raw-vdi-handler.ts"],
    mayNotReach: "formats/",
    why: "the lab reads uploads with its own XVA and VHD readers, not Cairn's format code (server/lab/README.md, Uploads)",
  },
];

const problems: string[] = [];
const edges = new Map<string, Map<string, string[]>>(); // unit -> imported unit -> "file:line" of each import
const fileEdges = new Map<string, string[]>(); // file -> files it imports (relative to server/)
const files = listSources(serverDir);

for (const file of files) {
  const path = relative(serverDir, file).split(sep).join("/");
  const from = unitOf(path);
  if (!from) {
    problems.push(
      `server/${path}: belongs to no layer: add its folder to the table in scripts/check-layers.ts and to docs/ARCHITECTURE.md`,
    );
    continue;
  }
  for (const { specifier, line } of importsOf(file)) {
    if (!specifier.startsWith(".")) continue;
    const where = `server/${path}:${line}`;
    const targetPath = resolveRelative(file, specifier);
    if (targetPath === null) {
      problems.push(`${where}: imports "${specifier}"\n  server/ may not import files outside server/: ${DOC}`);
      continue;
    }
    fileEdges.set(path, [...(fileEdges.get(path) ?? []), targetPath]);
    const to = unitOf(targetPath);
    if (!to) {
      problems.push(
        `${where}: imports "${specifier}"\n  server/${targetPath} belongs to no layer: add it to the table in scripts/check-layers.ts, ${DOC}`,
      );
      continue;
    }
    if (to === from) continue;
    const byTarget = edges.get(from) ?? new Map<string, string[]>();
    edges.set(from, byTarget);
    byTarget.set(to, [...(byTarget.get(to) ?? []), where]);

    const source = unitByName.get(from)!;
    const target = unitByName.get(to)!;
    const reason =
      target.importedOnlyBy && !target.importedOnlyBy.includes(from)
        ? `only ${target.importedOnlyBy.join(", ")} may import ${to}`
        : source.only && !source.only.includes(to)
          ? `${from} may import only ${source.only.join(", ")}`
          : layerOf.get(to)! < layerOf.get(from)!
            ? `${to} is in a higher layer`
            : layerOf.get(to) === layerOf.get(from)
              ? `${to} is in the same layer`
              : null;
    if (reason)
      problems.push(`${where}: imports "${specifier}"\n  ${from} may not import ${to} (${reason}): layers only point down, ${DOC}`);
  }
}

for (const rule of INDEPENDENT) {
  for (const start of rule.files) {
    // Breadth first, keeping the chain that reached each file, to show how the folder was reached.
    const via = new Map<string, string>([[start, start]]);
    const queue = [start];
    while (queue.length > 0) {
      const file = queue.shift()!;
      for (const next of fileEdges.get(file) ?? []) {
        if (via.has(next)) continue;
        via.set(next, `${via.get(file)} -> ${next}`);
        if (next.startsWith(rule.mayNotReach)) {
          problems.push(`server/${start} reaches server/${rule.mayNotReach}: ${via.get(next)}\n  ${rule.why}`);
        } else queue.push(next);
      }
    }
  }
}

/** Circles between units (Tarjan's strongly connected components), each with the imports that make it. */
function circles(): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const connect = (unit: string): void => {
    index.set(unit, next);
    low.set(unit, next);
    next++;
    stack.push(unit);
    onStack.add(unit);
    for (const to of edges.get(unit)?.keys() ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(unit, Math.min(low.get(unit)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(unit, Math.min(low.get(unit)!, index.get(to)!));
      }
    }
    if (low.get(unit) === index.get(unit)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== unit);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const unit of [...edges.keys()].sort()) if (!index.has(unit)) connect(unit);
  return found;
}

for (const component of circles()) {
  const members = new Set(component);
  const links = component.flatMap((from) =>
    [...(edges.get(from) ?? [])].filter(([to]) => members.has(to)).map(([to, sites]) => `    ${from} -> ${to}: ${sites.join(", ")}`),
  );
  problems.push(`import circle between ${component.join(", ")}:\n${links.join("\n")}\n  layers only point down, ${DOC}`);
}

if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} problem${problems.length === 1 ? "" : "s"} in ${files.length} files of server/\n`);
  console.error(problems.join("\n\n"));
  process.exit(1);
}
const edgeCount = [...edges.values()].reduce((sum, byTarget) => sum + byTarget.size, 0);
console.log(
  `check-layers: ${files.length} files, ${unitByName.size} units in ${LAYERS.length} layers, ${edgeCount} links between units: all point down`,
);
