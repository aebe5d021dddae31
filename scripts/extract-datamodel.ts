/**
 * Extracts, from XAPI's own datamodel source (`ocaml/idl/datamodel*.ml` of a xapi-project/xen-api checkout), the fields
 * of the classes the lab serves (class -> field -> wire type, internal-only fields left out as XAPI's generators do),
 * the values of every enum they use, and the parameters (with which have defaults) of the messages the lab answers.
 * Writes server/lab/datamodel-fields.json, which test/lab/lab-datamodel.test.ts holds the lab's records and methods to.
 *
 *   tsx scripts/extract-datamodel.ts <xen-api git dir> [commit]
 *
 * The datamodel is OCaml: this is a small evaluator of the subset it is written in (let bindings in modules, lists,
 * `@`, records, labelled arguments) that knows the datamodel's own constructors (`field`, `uid`, `namespace`, `names`,
 * `allowed_and_current_operations`, `call`, `Enum`, `List.map operation_enum`). It fails loudly on what it cannot read,
 * rather than guess: a field list it cannot evaluate is an error, not a shorter list.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const gitDir = process.argv[2] ?? "/work/.mirror/xapi-project+xen-api/repo";
const commit = process.argv[3] ?? "HEAD";
const OUTPUT = join(import.meta.dirname, "..", "server", "lab", "datamodel-fields.json");

/** The classes Cairn touches: their messages are extracted too (for every other class, only its fields). */
const CORE_CLASSES = [
  "pool",
  "host",
  "SR",
  "PBD",
  "VDI",
  "VBD",
  "VM",
  "VIF",
  "network",
  "task",
  "session",
  "event",
  "message",
  "VM_metrics",
  "VM_guest_metrics",
  "host_metrics",
  "PIF",
];

// ---------------------------------------------------------------------------------------------------------------- tokens

interface Token {
  kind: "ident" | "string" | "number" | "label" | "optlabel" | "punct" | "char";
  text: string;
  line: number;
  col: number;
  /** First token of its line. */
  first: boolean;
}

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  let lastLine = 0;
  const push = (kind: Token["kind"], text: string, start: number, startLine: number, startCol: number) => {
    tokens.push({ kind, text, line: startLine, col: startCol, first: startLine !== lastLine });
    lastLine = startLine;
    void start;
  };
  while (i < source.length) {
    const c = source[i];
    if (c === "\n") {
      line++;
      i++;
      lineStart = i;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r") {
      i++;
      continue;
    }
    if (source.startsWith("(*", i)) {
      let depth = 0;
      while (i < source.length) {
        if (source.startsWith("(*", i)) {
          depth++;
          i += 2;
        } else if (source.startsWith("*)", i)) {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else {
          if (source[i] === "\n") {
            line++;
            lineStart = i + 1;
          }
          i++;
        }
      }
      continue;
    }
    const startLine = line;
    const startCol = i - lineStart;
    if (c === '"') {
      let text = "";
      i++;
      while (source[i] !== '"') {
        if (source[i] === "\\") {
          const next = source[i + 1];
          if (next === "\n") {
            i += 2;
            line++;
            lineStart = i;
            while (source[i] === " " || source[i] === "\t") i++;
            continue;
          }
          text += next === "n" ? "\n" : next === "t" ? "\t" : next;
          i += 2;
          continue;
        }
        if (source[i] === "\n") {
          line++;
          lineStart = i + 1;
        }
        text += source[i++];
      }
      i++;
      push("string", text, i, startLine, startCol);
      continue;
    }
    if (c === "'" && source[i + 2] === "'") {
      push("char", source[i + 1], i, startLine, startCol);
      i += 3;
      continue;
    }
    if (c === "'" && source[i + 1] === "\\") {
      const end = source.indexOf("'", i + 2);
      push("char", source.slice(i + 1, end), i, startLine, startCol);
      i = end + 1;
      continue;
    }
    if (c === "'") {
      const typeVariable = /^'[a-z_][A-Za-z0-9_]*/.exec(source.slice(i, i + 60));
      if (typeVariable !== null) {
        push("ident", typeVariable[0], i, startLine, startCol);
        i += typeVariable[0].length;
        continue;
      }
    }
    const ident = /^[A-Za-z_][A-Za-z0-9_']*(\.[A-Za-z_][A-Za-z0-9_']*)*/.exec(source.slice(i, i + 200));
    if (ident !== null) {
      push("ident", ident[0], i, startLine, startCol);
      i += ident[0].length;
      continue;
    }
    const label = /^([~?])([a-z_][A-Za-z0-9_']*)(:?)/.exec(source.slice(i, i + 100));
    if (label !== null) {
      push(label[1] === "~" ? "label" : "optlabel", label[2] + label[3], i, startLine, startCol);
      i += label[0].length;
      continue;
    }
    const number = /^-?[0-9][0-9_]*(\.[0-9]*)?([eE][-+]?[0-9]+)?L?/.exec(source.slice(i, i + 60));
    if (number !== null) {
      push("number", number[0], i, startLine, startCol);
      i += number[0].length;
      continue;
    }
    const punct = /^(\+\+|->|::|:=|<-|\|>|@@|<>|>=|<=|==|!=|&&|\|\||\^|[()[\]{};,=@|.+\-*/<>:!&`#$%?~^])/.exec(source.slice(i, i + 3));
    if (punct === null) throw new Error(`cannot read ${JSON.stringify(source.slice(i, i + 20))} at line ${line}`);
    push("punct", punct[0], i, startLine, startCol);
    i += punct[0].length;
  }
  return tokens;
}

// ------------------------------------------------------------------------------------------------------------ expressions

type Expr =
  | { t: "ident"; name: string }
  | { t: "string"; value: string }
  | { t: "number"; value: string }
  | { t: "list"; items: Expr[] }
  | { t: "tuple"; items: Expr[] }
  | { t: "record"; fields: Record<string, Expr>; base?: Expr }
  | { t: "app"; head: Expr; args: Expr[]; labels: Record<string, Expr> }
  | { t: "concat"; left: Expr; right: Expr }
  | { t: "let"; name: string; params: string[]; value: Expr; body: Expr }
  | { t: "opaque"; why: string };

const STOP = new Set([")", "]", "}", ";", ",", "in", "then", "else", "with", "|", "->", "=", "end", "done"]);
const INFIX_OPERATORS = new Set(["@", "|>", "::", "^", "@@", "++", "+", "-", "*", "/", "<", ">", "<>", "&&", "||", "==", ">=", "<=", "!="]);
const OPAQUE_KEYWORDS = new Set(["fun", "function", "match", "if", "try", "begin", "while", "for", "assert", "lazy"]);

class Parser {
  private pos = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly end = tokens.length,
  ) {}

  private peek(): Token | undefined {
    return this.pos < this.end ? this.tokens[this.pos] : undefined;
  }

  private is(text: string): boolean {
    const token = this.peek();
    return token !== undefined && token.text === text && (token.kind === "punct" || token.kind === "ident");
  }

  private expect(text: string): void {
    if (!this.is(text)) throw new Error(`expected ${text} at line ${this.peek()?.line}, found ${this.peek()?.text}`);
    this.pos++;
  }

  /** Skips a balanced stretch up to a stop token at depth 0 (for constructs the evaluator does not need). */
  private skipBalanced(): void {
    let depth = 0;
    while (this.pos < this.end) {
      const token = this.tokens[this.pos];
      if (token.kind === "punct" && ["(", "[", "{"].includes(token.text)) depth++;
      else if (token.kind === "punct" && [")", "]", "}"].includes(token.text)) {
        if (depth === 0) return;
        depth--;
      } else if (depth === 0 && (token.kind === "punct" || token.kind === "ident") && [";", ","].includes(token.text)) return;
      this.pos++;
    }
  }

  parseExpr(): Expr {
    let left = this.parseTupleLess();
    if (this.is(",")) {
      const items = [left];
      while (this.is(",")) {
        this.pos++;
        items.push(this.parseTupleLess());
      }
      left = { t: "tuple", items };
    }
    return left;
  }

  private parseTupleLess(): Expr {
    const token = this.peek();
    if (token?.kind === "ident" && token.text === "let") return this.parseLet();
    if (token?.kind === "ident" && OPAQUE_KEYWORDS.has(token.text)) {
      this.skipBalanced();
      return { t: "opaque", why: token.text };
    }
    let left = this.parseApp();
    while ([...INFIX_OPERATORS].some((op) => this.is(op))) {
      const op = this.peek()?.text;
      this.pos++;
      const right = this.parseTupleLess();
      if (op === "@") left = { t: "concat", left, right };
      else if (op === "::") left = { t: "concat", left: { t: "list", items: [left] }, right };
      else if (op === "|>") left = { t: "app", head: right, args: [left], labels: {} };
      else left = { t: "opaque", why: op ?? "" };
    }
    return left;
  }

  private parseLet(): Expr {
    this.expect("let");
    if (this.is("rec")) this.pos++;
    const name = this.peek()?.text ?? "";
    this.pos++;
    const params: string[] = [];
    while (!this.is("=")) {
      params.push(this.peek()?.text ?? "");
      if (this.is("(")) {
        this.pos++;
        this.skipBalanced();
      }
      this.pos++;
    }
    this.expect("=");
    const value = this.parseExpr();
    this.expect("in");
    const body = this.parseExpr();
    return { t: "let", name, params, value, body };
  }

  private parseApp(): Expr {
    const head = this.parseAtom();
    if (head === undefined) throw new Error(`unexpected ${this.peek()?.text} at line ${this.peek()?.line}`);
    const args: Expr[] = [];
    const labels: Record<string, Expr> = {};
    for (;;) {
      const token = this.peek();
      if (token === undefined) break;
      if (token.kind === "label" || token.kind === "optlabel") {
        this.pos++;
        const name = token.text.replace(/:$/, "");
        if (token.text.endsWith(":")) {
          const value = this.parseAtom();
          if (value === undefined) throw new Error(`no value for ~${name} at line ${token.line}`);
          labels[name] = value;
        } else labels[name] = { t: "ident", name };
        continue;
      }
      if ((token.kind === "punct" || token.kind === "ident") && STOP.has(token.text)) break;
      if (token.kind === "punct" && INFIX_OPERATORS.has(token.text)) break;
      const arg = this.parseAtom();
      if (arg === undefined) break;
      args.push(arg);
    }
    if (args.length === 0 && Object.keys(labels).length === 0) return head;
    return { t: "app", head, args, labels };
  }

  private parseAtom(): Expr | undefined {
    const token = this.peek();
    if (token === undefined) return undefined;
    if (token.kind === "string") {
      this.pos++;
      return { t: "string", value: token.text };
    }
    if (token.kind === "number" || token.kind === "char") {
      this.pos++;
      return { t: "number", value: token.text };
    }
    if (token.kind === "ident") {
      if (STOP.has(token.text) || OPAQUE_KEYWORDS.has(token.text) || token.text === "let") return undefined;
      this.pos++;
      if (this.is(".") && this.tokens[this.pos + 1]?.text === "(") {
        // A local open, `Backtrace.(sexp_of_t empty)`: nothing the field lists need.
        this.pos++;
        this.parseAtom();
        return { t: "opaque", why: "local open" };
      }
      return { t: "ident", name: token.text };
    }
    if (token.text === "(") {
      this.pos++;
      if (this.is(")")) {
        this.pos++;
        return { t: "tuple", items: [] };
      }
      const inner = this.parseExpr();
      if (this.is(":")) {
        this.pos++;
        this.skipBalanced();
      }
      this.expect(")");
      return inner;
    }
    if (token.text === "[") {
      this.pos++;
      const items: Expr[] = [];
      while (!this.is("]")) {
        items.push(this.parseExpr());
        if (this.is(";")) this.pos++;
        else if (!this.is("]")) throw new Error(`expected ; or ] at line ${this.peek()?.line}, found ${this.peek()?.text}`);
      }
      this.pos++;
      return { t: "list", items };
    }
    if (token.text === "{") {
      this.pos++;
      const fields: Record<string, Expr> = {};
      let base: Expr | undefined;
      if (this.tokens[this.pos + 1]?.text === "with") {
        base = { t: "ident", name: this.peek()?.text ?? "" };
        this.pos += 2;
      }
      while (!this.is("}")) {
        const name = this.peek()?.text ?? "";
        this.pos++;
        this.expect("=");
        fields[name] = this.parseTupleLess();
        if (this.is(";")) this.pos++;
      }
      this.pos++;
      return { t: "record", fields, base };
    }
    if (token.text === "`") {
      const name = this.tokens[this.pos + 1]?.text ?? "";
      this.pos += 2;
      return { t: "ident", name: `\`${name}` };
    }
    return undefined;
  }
}

// --------------------------------------------------------------------------------------------------------------- bindings

interface Binding {
  file: string;
  /** Module path inside the file. */
  scope: string[];
  name: string;
  params: string[];
  start: number;
  end: number;
  tokens: Token[];
  order: number;
}

const bindings: Binding[] = [];

function show(path: string): string {
  return execFileSync("git", ["-C", gitDir, "show", `${commit}:${path}`], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

function loadFile(path: string): void {
  const file = path.replace(/^.*\//, "").replace(/\.ml$/, "");
  const tokens = tokenize(show(path));
  const scope: string[] = [];
  let current: Binding | undefined;
  const close = (at: number) => {
    if (current !== undefined) current.end = at;
    current = undefined;
  };
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (!token.first || token.kind !== "ident") continue;
    const indent = scope.length * 2;
    if (token.col === indent && token.text === "module" && tokens[i + 2]?.text === "=" && tokens[i + 3]?.text === "struct") {
      close(i);
      scope.push(tokens[i + 1].text);
      i += 3;
    } else if (token.col === indent - 2 && token.text === "end" && scope.length > 0) {
      close(i);
      scope.pop();
    } else if (token.col === indent && (token.text === "let" || token.text === "and")) {
      close(i);
      let j = i + 1;
      if (tokens[j].text === "rec") j++;
      const name = tokens[j].text;
      const params: string[] = [];
      let k = j + 1;
      let depth = 0;
      while (k < tokens.length && !(depth === 0 && tokens[k].text === "=" && tokens[k].kind === "punct")) {
        if (tokens[k].text === "(") depth++;
        if (tokens[k].text === ")") depth--;
        if (depth === 0 && (tokens[k].kind === "ident" || tokens[k].kind === "label" || tokens[k].kind === "optlabel"))
          params.push(tokens[k].text.replace(/:$/, ""));
        k++;
      }
      if (tokens[j].kind === "ident" && k < tokens.length) {
        current = { file, scope: [...scope], name, params, start: k + 1, end: tokens.length, tokens, order: bindings.length };
        bindings.push(current);
      }
      i = k;
    } else if (token.col === indent && ["type", "open", "include", "exception", "module"].includes(token.text)) {
      close(i);
    }
  }
  close(tokens.length);
}

const parsed = new Map<Binding, Expr>();
function bodyOf(binding: Binding): Expr {
  let expr = parsed.get(binding);
  if (expr === undefined) {
    const parser = new Parser(binding.tokens.slice(0, binding.end));
    (parser as unknown as { pos: number }).pos = binding.start;
    try {
      expr = parser.parseExpr();
    } catch (error) {
      // Code the evaluator does not read (functions of the generator): only an error if a field list needs it.
      expr = { t: "opaque", why: `${binding.file} ${binding.name}: ${(error as Error).message}` };
    }
    parsed.set(binding, expr);
  }
  return expr;
}

/** The binding `name` (maybe qualified) seen from `from`: innermost scope first, latest definition before the use. */
function resolve(name: string, from: Binding | undefined): Binding | undefined {
  const parts = name.split(".");
  const last = parts[parts.length - 1];
  const qualifier = parts.slice(0, -1);
  const candidates = bindings.filter((b) => b.name === last);
  const matchesQualifier = (b: Binding) => {
    if (qualifier.length === 0) return true;
    const path = [b.file.charAt(0).toUpperCase() + b.file.slice(1), ...b.scope];
    return qualifier.every((q) => path.includes(q));
  };
  const visible = candidates.filter(matchesQualifier);
  if (from !== undefined && qualifier.length === 0) {
    for (let depth = from.scope.length; depth >= 0; depth--) {
      const prefix = from.scope.slice(0, depth).join(".");
      const same = visible.filter((b) => b.file === from.file && b.scope.join(".") === prefix && b.order < from.order);
      if (same.length > 0) return same[same.length - 1];
    }
  }
  const topLevel = visible.filter((b) => qualifier.length > 0 || b.scope.length === 0);
  const pick = topLevel.length > 0 ? topLevel : visible;
  return pick[pick.length - 1];
}

// ------------------------------------------------------------------------------------------------------------- evaluation

interface FieldInfo {
  name: string;
  type: string;
  internal: boolean;
  /** RW, StaticRO or DynamicRO: only RW fields get the implicit setters. */
  qualifier?: string;
  default?: unknown;
}

type Value =
  | { v: "fields"; fields: FieldInfo[] }
  | { v: "string"; value: string }
  | { v: "type"; type: string }
  | { v: "list"; items: Value[] }
  | { v: "tuple"; items: Value[] }
  | { v: "record"; fields: Record<string, Value> }
  | { v: "message"; name: string; params: Array<{ name: string; type: string; hasDefault: boolean }>; async: boolean }
  | { v: "default"; value: unknown }
  | { v: "ctor"; name: string }
  | { v: "unknown"; why: string };

const enums = new Map<string, string[]>();

interface Env {
  binding: Binding | undefined;
  locals: Map<string, { params: string[]; value: Expr; env: Env }>;
}

function evaluate(expr: Expr, env: Env): Value {
  switch (expr.t) {
    case "string":
      return { v: "string", value: expr.value };
    case "number":
      return { v: "unknown", why: "number" };
    case "opaque":
      return { v: "unknown", why: expr.why };
    case "tuple":
      return { v: "tuple", items: expr.items.map((item) => evaluate(item, env)) };
    case "record": {
      const base = expr.base === undefined ? undefined : evaluate(expr.base, env);
      const fields = Object.fromEntries(Object.entries(expr.fields).map(([k, e]) => [k, evaluate(e, env)]));
      if (base?.v === "message") return { ...base, name: fields.msg_name?.v === "string" ? fields.msg_name.value : base.name };
      return { v: "record", fields: { ...(base?.v === "record" ? base.fields : {}), ...fields } };
    }
    case "list": {
      const items = expr.items.map((item) => evaluate(item, env));
      if (items.length > 0 && items.every((item) => item.v === "fields")) {
        return { v: "fields", fields: items.flatMap((item) => (item as { fields: FieldInfo[] }).fields) };
      }
      return { v: "list", items };
    }
    case "concat": {
      const left = evaluate(expr.left, env);
      const right = evaluate(expr.right, env);
      if (left.v === "fields" && right.v === "fields") return { v: "fields", fields: [...left.fields, ...right.fields] };
      if (left.v === "list" && right.v === "list") return { v: "list", items: [...left.items, ...right.items] };
      if (left.v === "list" && left.items.length === 0) return right;
      if (right.v === "list" && right.items.length === 0) return left;
      return { v: "unknown", why: `cannot concatenate ${left.v} and ${right.v}` };
    }
    case "let": {
      const locals = new Map(env.locals);
      const inner: Env = { binding: env.binding, locals };
      locals.set(expr.name, { params: expr.params, value: expr.value, env: inner });
      return evaluate(expr.body, inner);
    }
    case "ident":
      return evaluateIdent(expr.name, env, [], {});
    case "app":
      if (expr.head.t !== "ident") return { v: "unknown", why: "application of an expression" };
      return evaluateIdent(expr.head.name, env, expr.args, expr.labels);
  }
}

const SIMPLE_TYPES: Record<string, string> = {
  String: "string",
  Int: "int",
  Float: "float",
  Bool: "bool",
  DateTime: "datetime",
  SecretString: "string",
};

function typeOf(value: Value, what: string): string {
  if (value.v === "type") return value.type;
  throw new Error(`${what}: not a type (${JSON.stringify(value).slice(0, 200)})`);
}

function stringOf(value: Value, what: string): string {
  if (value.v === "string") return value.value;
  throw new Error(`${what}: not a string (${JSON.stringify(value).slice(0, 200)})`);
}

function defaultOf(value: Value | undefined): unknown {
  return value?.v === "default" ? value.value : undefined;
}

function evaluateIdent(name: string, env: Env, args: Expr[], labels: Record<string, Expr>): Value {
  const arg = (i: number) => evaluate(args[i], env);
  const label = (l: string) => (labels[l] === undefined ? undefined : evaluate(labels[l], env));
  const local = env.locals.get(name);
  if (local !== undefined) {
    // A local helper such as `names`' own `field x y = field x y ~qualifier...`: apply it by substitution.
    const locals = new Map(local.env.locals);
    locals.delete(name);
    local.params.forEach((param, i) => {
      if (args[i] !== undefined) locals.set(param, { params: [], value: args[i], env });
    });
    const inner: Env = { binding: local.env.binding, locals };
    if (local.value.t === "app" && local.value.head.t === "ident") {
      // Arguments beyond the helper's own parameters (`let field = field ~ty:Int in field "free" ...`) pass through,
      // evaluated where they were written.
      const extraArgs: Expr[] = args.slice(local.params.length).map((expr, i) => {
        locals.set(`$arg${i}`, { params: [], value: expr, env });
        return { t: "ident", name: `$arg${i}` };
      });
      const extraLabels: Record<string, Expr> = {};
      for (const [key, expr] of Object.entries(labels)) {
        locals.set(`$label_${key}`, { params: [], value: expr, env });
        extraLabels[key] = { t: "ident", name: `$label_${key}` };
      }
      return evaluateIdent(local.value.head.name, inner, [...local.value.args, ...extraArgs], { ...local.value.labels, ...extraLabels });
    }
    return evaluate(local.value, inner);
  }
  if (name in SIMPLE_TYPES && args.length === 0) return { v: "type", type: SIMPLE_TYPES[name] };
  switch (name) {
    case "Ref":
      return { v: "type", type: `${stringOf(arg(0), "Ref")} ref` };
    case "Set":
      return { v: "type", type: `${typeOf(arg(0), "Set")} set` };
    case "Option":
      return { v: "type", type: `${typeOf(arg(0), "Option")} option` };
    case "Record":
      return { v: "type", type: `${stringOf(arg(0), "Record")} record` };
    case "Map": {
      const pair = arg(0);
      if (pair.v !== "tuple") throw new Error("Map of a non-pair");
      return { v: "type", type: `(${typeOf(pair.items[0], "Map key")} -> ${typeOf(pair.items[1], "Map value")}) map` };
    }
    case "Enum": {
      const pair = arg(0);
      if (pair.v !== "tuple") throw new Error("Enum of a non-pair");
      const enumName = stringOf(pair.items[0], "Enum name");
      const values = pair.items[1];
      if (values.v !== "list") throw new Error(`Enum ${enumName}: values not a list`);
      enums.set(
        enumName,
        values.items.map((item) => (item.v === "tuple" ? stringOf(item.items[0], enumName) : stringOf(item, enumName))),
      );
      return { v: "type", type: `enum ${enumName}` };
    }
    case "List.map": {
      const fn = args[0];
      if (fn.t === "ident" && fn.name === "operation_enum") {
        const list = arg(1);
        if (list.v !== "list") throw new Error("List.map operation_enum of a non-list");
        return {
          v: "list",
          items: list.items.map((item) => {
            if (item.v !== "message") throw new Error(`operation_enum of ${item.v}`);
            return { v: "tuple", items: [{ v: "string", value: item.name }] };
          }),
        };
      }
      return { v: "unknown", why: "List.map" };
    }
    case "List.concat": {
      const lists = arg(0);
      if (lists.v === "fields") return lists;
      if (lists.v === "list" && lists.items.every((item) => item.v === "list"))
        return { v: "list", items: lists.items.flatMap((item) => (item as { items: Value[] }).items) };
      return { v: "unknown", why: "List.concat" };
    }
    case "Some":
      return arg(0).v === "default" ? arg(0) : { v: "default", value: literalOf(args[0]) };
    case "None":
      return { v: "unknown", why: "None" };
    case "field": {
      const strings = args.map((a) => evaluate(a, env)).filter((a) => a.v === "string") as Array<{ value: string }>;
      if (strings.length < 1) throw new Error(`field without a name near ${env.binding?.file}:${env.binding?.name}`);
      const ty = label("ty");
      const qualifier = label("qualifier");
      return {
        v: "fields",
        fields: [
          {
            name: strings[0].value,
            type: ty === undefined ? "string" : typeOf(ty, `type of ${strings[0].value}`),
            internal: labels.internal_only !== undefined && labels.internal_only.t === "ident" && labels.internal_only.name === "true",
            default: defaultOf(label("default_value")),
            qualifier: qualifier === undefined ? "RW" : qualifier.v === "ctor" ? qualifier.name : "?",
          },
        ],
      };
    }
    case "uid":
      return { v: "fields", fields: [{ name: "uuid", type: "string", internal: false, qualifier: "DynamicRO" }] };
    case "namespace": {
      const prefix = stringOf(label("name") ?? { v: "unknown", why: "no name" }, "namespace name");
      const contents = label("contents");
      if (contents?.v !== "fields") throw new Error(`namespace ${prefix}: contents not fields (${contents?.v})`);
      return { v: "fields", fields: contents.fields.map((f) => ({ ...f, name: `${prefix}_${f.name}` })) };
    }
    case "allowed_and_current_operations": {
      const ops = typeOf(arg(args.length - 1), "operations");
      return {
        v: "fields",
        fields: [
          { name: "allowed_operations", type: `${ops} set`, internal: false, qualifier: "DynamicRO" },
          { name: "current_operations", type: `(string -> ${ops}) map`, internal: false, qualifier: "DynamicRO" },
        ],
      };
    }
    case "call": {
      const msgName = stringOf(label("name") ?? { v: "unknown", why: "" }, "call name");
      const params: Array<{ name: string; type: string; hasDefault: boolean }> = [];
      const versioned = label("versioned_params");
      const plain = label("params");
      if (versioned !== undefined && versioned.v === "list") {
        for (const item of versioned.items) {
          if (item.v !== "record" || item.fields.param_name === undefined)
            throw new Error(`${msgName}: versioned param not readable: ${JSON.stringify(item).slice(0, 300)}`);
          params.push({
            name: stringOf(item.fields.param_name, "param_name"),
            type: typeOf(item.fields.param_type, "param_type"),
            hasDefault: item.fields.param_default?.v === "default",
          });
        }
      } else if (plain !== undefined && plain.v === "list") {
        for (const item of plain.items) {
          if (item.v !== "tuple") throw new Error(`${msgName}: param not a tuple`);
          params.push({ name: stringOf(item.items[1], "param name"), type: typeOf(item.items[0], "param type"), hasDefault: false });
        }
      } else if (plain !== undefined || versioned !== undefined) {
        throw new Error(`${msgName}: parameters not readable`);
      }
      // `call`'s default flags are [`Session; `Async]: a message is async unless its ~flags leave `Async out.
      const flags = labels.flags;
      const async = flags === undefined || (flags.t === "list" && flags.items.some((item) => item.t === "ident" && item.name === "`Async"));
      return { v: "message", name: msgName, params, async };
    }
  }
  const binding = resolve(name, env.binding);
  if (binding === undefined) {
    return /^[A-Z][A-Za-z]*$/.test(name) && args.length === 0 ? { v: "ctor", name } : { v: "unknown", why: `unbound ${name}` };
  }
  const body = bodyOf(binding);
  // Parameters of a helper (`names oss_since qual`) bound to the arguments given, positionally.
  const locals = new Map<string, { params: string[]; value: Expr; env: Env }>();
  const positional = binding.params.filter((p) => !p.startsWith("?") && !labels[p]);
  positional.forEach((param, i) => {
    if (args[i] !== undefined) locals.set(param, { params: [], value: args[i], env });
  });
  return evaluate(body, { binding, locals });
}

function literalOf(expr: Expr): unknown {
  if (expr.t === "app" && expr.head.t === "ident") {
    const a = expr.args[0];
    switch (expr.head.name) {
      case "VString":
        return a?.t === "string" ? a.value : "";
      case "VInt":
        return a?.t === "number" ? Number(a.value.replace(/L$/, "")) : 0;
      case "VBool":
        return a?.t === "ident" ? a.name === "true" : false;
      case "VSet":
        return a?.t === "list" ? a.items.map(literalOf) : [];
      case "VMap":
        return {};
      case "VRef":
        return "OpaqueRef:NULL";
      case "VEnum":
        return a?.t === "string" ? a.value : "";
      case "VDateTime":
        return "19700101T00:00:00Z";
      case "VFloat":
        return 0;
    }
  }
  if (expr.t === "ident" && expr.name === "null_ref") return "OpaqueRef:NULL";
  return null;
}

// ------------------------------------------------------------------------------------------------------------------ main

const files = execFileSync("git", ["-C", gitDir, "ls-tree", "--name-only", commit, "ocaml/idl/"], { encoding: "utf8" })
  .split("\n")
  .filter((path) => /\/datamodel[a-z_]*\.ml$/.test(path));
for (const path of files) loadFile(path);

// The classes whose records a client may list (`X.get_all_records`): datamodel.ml's expose_get_all_messages_for, plus
// message (its own get_all_records) and the core classes.
const exposedBinding = resolve("expose_get_all_messages_for", undefined);
if (exposedBinding === undefined) throw new Error("expose_get_all_messages_for not found");
const exposedValue = evaluate(bodyOf(exposedBinding), { binding: exposedBinding, locals: new Map() });
if (exposedValue.v !== "list") throw new Error("expose_get_all_messages_for not readable");
const exposed = exposedValue.items.map((item) => stringOf(item, "exposed class"));
const CLASSES = new Set([...CORE_CLASSES, ...exposed]);

interface ClassInfo {
  fields: Record<string, string>;
  /** Fields with qualifier RW: XAPI generates `set_` (and `add_to_`/`remove_from_`, `add_`/`remove_`) for these only. */
  writable: string[];
  /** Whether XAPI generates `create(args)` / `destroy(self)` (gen_constructor_destructor). */
  constructor: boolean;
  messages: Record<string, { params: string[]; types: string[]; defaulted: number; async: boolean }>;
  defaults?: Record<string, unknown>;
}
const classes: Record<string, ClassInfo> = {};
// Classes are `create_obj ~name:_x ~contents:... ~messages:...` applications, or (event) the object record written out.
for (const binding of bindings) {
  const found = binding.tokens
    .slice(binding.start, binding.end)
    .some((token) => token.text === "create_obj" || token.text === "obj_lifecycle");
  if (!found) continue;
  const expr = bodyOf(binding);
  const app = findApp(expr, "create_obj");
  const parts =
    app !== undefined
      ? { name: app.labels.name, contents: app.labels.contents, messages: app.labels.messages }
      : expr.t === "record"
        ? { name: expr.fields.name, contents: expr.fields.contents, messages: expr.fields.messages }
        : undefined;
  if (parts?.name === undefined || parts.contents === undefined) continue;
  const env: Env = { binding, locals: new Map() };
  const nameValue = evaluate(parts.name, env);
  if (nameValue?.v !== "string" || !CLASSES.has(nameValue.value)) continue;
  const cls = nameValue.value;
  const contents = evaluate(parts.contents, env);
  if (contents.v !== "fields") throw new Error(`${cls}: contents not readable (${JSON.stringify(contents).slice(0, 300)})`);
  const messagesValue = parts.messages === undefined ? { v: "list", items: [] } : evaluate(parts.messages, env);
  if (messagesValue.v !== "list") throw new Error(`${cls}: messages not readable`);
  const messages: Record<string, ClassInfo["messages"][string]> = {};
  for (const message of messagesValue.items) {
    if (message.v !== "message") throw new Error(`${cls}: a message is ${message.v}: ${JSON.stringify(message).slice(0, 400)}`);
    if (!CORE_CLASSES.includes(cls)) continue;
    messages[`${cls}.${message.name}`] = {
      params: message.params.map((p) => p.name),
      types: message.params.map((p) => p.type),
      defaulted: message.params.filter((p) => p.hasDefault).length,
      async: message.async,
    };
  }
  const fields: Record<string, string> = {};
  const defaults: Record<string, unknown> = {};
  const writable: string[] = [];
  for (const field of contents.fields) {
    if (field.internal) continue;
    fields[field.name] = field.type;
    if (field.qualifier === "?") throw new Error(`${cls}.${field.name}: qualifier not readable`);
    if (field.qualifier === "RW") writable.push(field.name);
    if (field.default !== undefined && field.default !== null) defaults[field.name] = field.default;
  }
  // "As of tampa, the event record has one more field, snapshot, which is the record of the object changed" (datamodel.ml):
  // not in the datamodel's field list, so added here as XAPI's own doc generators add it.
  if (cls === "event") fields.snapshot = "<object record>";
  const constructor = app?.labels.gen_constructor_destructor?.t === "ident" && app.labels.gen_constructor_destructor.name === "true";
  classes[cls] = { fields, writable, constructor, messages, ...(Object.keys(defaults).length > 0 ? { defaults } : {}) };
}

function findApp(expr: Expr, head: string): Extract<Expr, { t: "app" }> | undefined {
  if (expr.t === "app" && expr.head.t === "ident" && expr.head.name === head) return expr;
  if (expr.t === "let") return findApp(expr.body, head);
  return undefined;
}

const missing = [...CLASSES].filter((cls) => classes[cls] === undefined);
if (missing.length > 0) throw new Error(`classes not found: ${missing.join(", ")}`);

const usedEnums = new Set<string>();
for (const { fields, messages } of Object.values(classes)) {
  for (const type of [...Object.values(fields), ...Object.values(messages).flatMap((m) => m.types)]) {
    for (const match of type.matchAll(/enum ([A-Za-z0-9_]+)/g)) usedEnums.add(match[1]);
  }
}
const revision = execFileSync("git", ["-C", gitDir, "rev-parse", commit], { encoding: "utf8" }).trim();
let tag = "";
try {
  tag = execFileSync("git", ["-C", gitDir, "describe", "--tags", commit], { encoding: "utf8" }).trim();
} catch {}
// event.from's records are not the datamodel's event class (its doc says so): ocaml/xapi-types/event_types.ml defines them.
const eventSource = show("ocaml/xapi-types/event_types.ml");
const eventType = /type event = \{([^}]*)\}/.exec(eventSource);
if (eventType === null) throw new Error("event_types.ml: type event not found");
const eventFromRecord = Object.fromEntries(
  [...eventType[1].matchAll(/(\w+):\s*([^[;]+?)\s*\[@key "(\w+)"\]/g)].map((m) => [m[3], m[2].trim()]),
);
// Error names (api_errors.ml: `let vm_bad_power_state = add_error "VM_BAD_POWER_STATE"`) and their parameter lists
// (datamodel_errors.ml: `error Api_errors.vm_bad_power_state ["vm"; "expected"; "actual"] ~doc:...`).
const errorNames = new Map(
  [...show("ocaml/xapi-consts/api_errors.ml").matchAll(/let (\w+) =\s*add_error\s+"([A-Z0-9_]+)"/g)].map((m) => [m[1], m[2]]),
);
const errors: Record<string, string[] | null> = {};
for (const m of show("ocaml/idl/datamodel_errors.ml").matchAll(/error\s+Api_errors\.(\w+)\s*\[([^\]]*)\]/g)) {
  const name = errorNames.get(m[1]);
  if (name === undefined) continue;
  errors[name] = [...m[2].matchAll(/"([^"]*)"/g)].map((p) => p[1]);
}
for (const name of errorNames.values()) errors[name] ??= null;
const output = {
  source: {
    repository: "xapi-project/xen-api",
    commit: revision,
    describe: tag,
    files: [...files.map((f) => f.replace(/^.*\//, "")), "event_types.ml", "api_errors.ml"],
  },
  /** Classes with `get_all_records` on a real pool (the xen-api client fetches and watches each). */
  exposed: [...new Set([...exposed, "message"])],
  eventFromRecord,
  classes,
  /** Every error name of api_errors.ml, with its parameter names where datamodel_errors.ml declares them (else null). */
  errors: Object.fromEntries(Object.entries(errors).sort(([a], [b]) => a.localeCompare(b))),
  enums: Object.fromEntries([...usedEnums].sort().map((name) => [name, enums.get(name) ?? []])),
};
writeFileSync(OUTPUT, `${JSON.stringify(output, null, 1)}\n`);

// A cross-check with XAPI's own generator: doc/data/xenapi.json (written by ocaml/idl/json_backend, last in March 2024).
// Fields added since then are expected on our side only; anything else is a misreading of this script.
try {
  const generated = JSON.parse(show("doc/data/xenapi.json")) as Array<{ name: string; fields: Array<{ name: string; type: string }> }>;
  for (const cls of generated) {
    const ours = classes[cls.name];
    if (ours === undefined) continue;
    const theirs = new Map(cls.fields.map((field) => [field.name, field.type]));
    const missing = [...theirs.keys()].filter((field) => ours.fields[field] === undefined);
    const typed = [...theirs].filter(
      ([field, type]) => ours.fields[field] !== undefined && ours.fields[field] !== type && field !== "snapshot",
    );
    const added = Object.keys(ours.fields).filter((field) => !theirs.has(field));
    if (missing.length > 0 || typed.length > 0)
      console.log(
        `${cls.name}: MISSING ${missing.join(", ")} TYPES ${typed.map(([f, t]) => `${f}: ${t} vs ${ours.fields[f]}`).join(", ")}`,
      );
    else if (added.length > 0) console.log(`${cls.name}: added since xenapi.json: ${added.join(", ")}`);
  }
} catch (error) {
  console.log(`no cross-check with doc/data/xenapi.json: ${(error as Error).message}`);
}
const fieldCount = Object.values(classes).reduce((n, c) => n + Object.keys(c.fields).length, 0);
console.log(
  `${OUTPUT}: ${Object.keys(classes).length} classes, ${fieldCount} fields, ${usedEnums.size} enums (${revision.slice(0, 12)} ${tag})`,
);
