import type { OvaDocument, OvaObject } from "./ova-document.js";
import { XvaError } from "./xva-error.js";

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decodeEntities(text: string, at: number): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (whole, body: string) => {
    if (body[0] === "#") {
      const code = body[1] === "x" || body[1] === "X" ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return String.fromCodePoint(code);
    }
    const decoded = ENTITIES[body];
    if (decoded === undefined) throw new XvaError("XVA_BAD_OVA", `unknown entity ${whole}`, { entry: "ova.xml", offset: at });
    return decoded;
  });
}

/** A small recursive-descent reader of XML-RPC values (the only XML ova.xml contains). */
class XmlRpcReader {
  private at = 0;
  constructor(private readonly xml: string) {}

  fail(detail: string): never {
    throw new XvaError("XVA_BAD_OVA", detail, { entry: "ova.xml", offset: this.at });
  }

  private skipSpace(): void {
    for (;;) {
      while (this.at < this.xml.length && /\s/.test(this.xml[this.at])) this.at++;
      if (this.xml.startsWith("<?", this.at)) this.at = this.indexOrFail("?>") + 2;
      else if (this.xml.startsWith("<!--", this.at)) this.at = this.indexOrFail("-->") + 3;
      else return;
    }
  }

  private indexOrFail(token: string): number {
    const found = this.xml.indexOf(token, this.at);
    if (found < 0) this.fail(`unterminated markup, expected ${token}`);
    return found;
  }

  /** Reads `<name>` or `<name/>`; returns the tag name and whether it was self-closing. */
  private openTag(): { name: string; empty: boolean } {
    this.skipSpace();
    const match = /^<([A-Za-z_][\w.:-]*)\s*(\/?)>/.exec(this.xml.slice(this.at, this.at + 64));
    if (!match) this.fail(`expected an opening tag, found ${JSON.stringify(this.xml.slice(this.at, this.at + 20))}`);
    this.at += match[0].length;
    return { name: match[1], empty: match[2] === "/" };
  }

  private expectOpen(name: string): boolean {
    const tag = this.openTag();
    if (tag.name !== name) this.fail(`expected <${name}>, found <${tag.name}>`);
    return tag.empty;
  }

  private expectClose(name: string): void {
    this.skipSpace();
    const token = `</${name}>`;
    if (!this.xml.startsWith(token, this.at)) this.fail(`expected ${token}`);
    this.at += token.length;
  }

  private peekClose(name: string): boolean {
    this.skipSpace();
    return this.xml.startsWith(`</${name}>`, this.at);
  }

  private text(): string {
    const start = this.at;
    const end = this.indexOrFail("<");
    this.at = end;
    return decodeEntities(this.xml.slice(start, end), start);
  }

  value(): unknown {
    if (this.expectOpen("value")) return "";
    const start = this.at;
    const rawText = this.text();
    if (this.xml.startsWith("</value>", this.at)) {
      this.at += "</value>".length;
      return rawText;
    }
    if (rawText.trim() !== "") {
      this.at = start;
      this.fail("text mixed with a typed value");
    }
    const tag = this.openTag();
    let result: unknown;
    if (tag.empty) result = tag.name === "nil" ? null : tag.name === "string" ? "" : this.fail(`empty <${tag.name}/>`);
    else result = this.typed(tag.name);
    this.expectClose("value");
    return result;
  }

  private typed(name: string): unknown {
    const at = this.at;
    switch (name) {
      case "string": {
        const text = this.text();
        this.expectClose(name);
        return text;
      }
      case "int":
      case "i4":
      case "i8": {
        const text = this.text().trim();
        if (!/^[-+]?\d+$/.test(text)) this.fail(`<${name}> holds ${JSON.stringify(text)}, not an integer`);
        this.expectClose(name);
        return Number(text);
      }
      case "double": {
        const text = this.text().trim();
        const number = Number(text);
        if (text === "" || Number.isNaN(number)) this.fail(`<double> holds ${JSON.stringify(text)}`);
        this.expectClose(name);
        return number;
      }
      case "boolean": {
        const text = this.text().trim();
        if (text !== "0" && text !== "1") this.fail(`<boolean> holds ${JSON.stringify(text)}, not 0 or 1`);
        this.expectClose(name);
        return text === "1";
      }
      case "dateTime.iso8601": {
        const text = this.text().trim();
        const m = /^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(text);
        if (!m) this.fail(`<dateTime.iso8601> holds ${JSON.stringify(text)}`);
        this.expectClose(name);
        return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] ?? "Z"}`);
      }
      case "array": {
        const items: unknown[] = [];
        if (!this.expectOpen("data")) {
          while (!this.peekClose("data")) items.push(this.value());
          this.expectClose("data");
        }
        this.expectClose("array");
        return items;
      }
      case "struct": {
        const struct: Record<string, unknown> = {};
        while (!this.peekClose("struct")) {
          this.expectOpen("member");
          this.expectOpen("name");
          const key = this.text();
          this.expectClose("name");
          struct[key] = this.value();
          this.expectClose("member");
        }
        this.expectClose("struct");
        return struct;
      }
      default:
        this.at = at;
        return this.fail(`unknown XML-RPC type <${name}>`);
    }
  }

  end(): void {
    this.skipSpace();
    if (this.at < this.xml.length) this.fail("trailing content after the top-level <value>");
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * Parses ova.xml into typed values: `<int>`/`<i4>`/`<i8>` and `<double>` to numbers, `<boolean>` to booleans,
 * `<dateTime.iso8601>` to Dates, arrays, structs, and strings (bare text or `<string>`; XAPI writes int64 fields
 * as bare strings, which stay strings).
 * @throws XvaError XVA_BAD_OVA naming the offset of the first malformed token or the missing field.
 */
export function parseOvaXml(xml: string): OvaDocument {
  const reader = new XmlRpcReader(xml);
  const root = reader.value();
  reader.end();
  const bad = (detail: string): never => {
    throw new XvaError("XVA_BAD_OVA", detail, { entry: "ova.xml" });
  };
  if (!isRecord(root)) return bad("the top-level value is not a struct");
  const version = root.version;
  if (!isRecord(version)) return bad("the version struct is missing");
  if (!Array.isArray(root.objects)) return bad("the objects array is missing");
  const objects: OvaObject[] = root.objects.map((object, i) => {
    if (!isRecord(object)) return bad(`objects[${i}] is not a struct`);
    if (typeof object.class !== "string" || typeof object.id !== "string" || !isRecord(object.snapshot)) {
      return bad(`objects[${i}] lacks a string class, a string id or a snapshot struct`);
    }
    return { class: object.class, id: object.id, snapshot: object.snapshot };
  });
  for (const [key, value] of Object.entries(version)) {
    if (typeof value !== "string" && typeof value !== "number") bad(`version.${key} is neither a string nor a number`);
  }
  return { version: version as Record<string, string | number>, objects };
}
