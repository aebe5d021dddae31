/**
 * The XML-RPC subset XAPI speaks (see XMLRPC.md): parsing `<methodCall>` and writing `<methodResponse>`.
 *
 * Owned by the lab on purpose, and separate from Cairn's ova.xml reader (server/formats/xva): the lab is the
 * independent side of every test, so it must not share Cairn's reading of XML-RPC.
 */

/** A value XAPI marshals as `<double>` (a float field whose value happens to be whole stays a double). */
export class XmlRpcDouble {
  constructor(readonly value: number) {}
}

/** A value XAPI marshals as `<dateTime.iso8601>` (`20261203T12:00:00Z`). */
export class XmlRpcDateTime {
  constructor(readonly text: string) {}
}

/** A value XAPI marshals as `<i4>` (only `event.from`'s `valid_ref_counts`, an `int32` map). */
export class XmlRpcInt32 {
  constructor(readonly value: number) {}
}

/** A request the lab could not read: answered with HTTP 500, as XAPI answers `Xmlrpc.Parse_error`. */
export class XmlRpcParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XmlRpcParseError";
  }
}

export interface MethodCall {
  method: string;
  params: unknown[];
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;" };

/**
 * Escapes text for element content. Characters XML 1.0 cannot carry (controls other than tab, LF, CR) are dropped, as
 * XAPI's encoder drops them; CR is written as a reference because a parser would otherwise turn it into LF.
 */
export function escapeXmlText(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "").replace(/[&<>"\r]/g, (char) => ESCAPES[char]);
}

/** `%.16g`, XAPI's float format: no exponent for ordinary values, shortest text that round-trips otherwise. */
function formatDouble(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return String(Number(value.toPrecision(16)));
}

/**
 * One value as XAPI writes it (`Xmlrpc.to_string`): strings and 64-bit ints as bare `<value>text</value>` (so
 * clients read an int as a string of digits), whole JS numbers as ints, other numbers and {@link XmlRpcDouble} as
 * `<double>`, booleans `0|1`, arrays, structs; `undefined` (void) as the empty string; `null` as `<nil/>`.
 */
export function encodeValue(value: unknown): string {
  if (value === undefined) return "<value></value>";
  if (value === null) return "<value><nil/></value>";
  if (typeof value === "string") return `<value>${escapeXmlText(value)}</value>`;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `<value>${BigInt(value)}</value>` : `<value><double>${formatDouble(value)}</double></value>`;
  }
  if (typeof value === "bigint") return `<value>${value}</value>`;
  if (typeof value === "boolean") return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (value instanceof XmlRpcDouble) return `<value><double>${formatDouble(value.value)}</double></value>`;
  if (value instanceof XmlRpcDateTime) return `<value><dateTime.iso8601>${escapeXmlText(value.text)}</dateTime.iso8601></value>`;
  if (value instanceof XmlRpcInt32) return `<value><i4>${value.value | 0}</i4></value>`;
  if (Array.isArray(value)) return `<value><array><data>${value.map(encodeValue).join("")}</data></array></value>`;
  if (typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .map(([name, member]) => `<member><name>${escapeXmlText(name)}</name>${encodeValue(member)}</member>`)
      .join("");
    return `<value><struct>${members}</struct></value>`;
  }
  return `<value>${escapeXmlText(String(value))}</value>`;
}

/** A whole `<methodResponse>` carrying one value (XAPI's `{Status, Value}` / `{Status, ErrorDescription}` struct, or raw). */
export function formatMethodResponse(value: unknown): string {
  return `<?xml version="1.0"?><methodResponse><params><param>${encodeValue(value)}</param></params></methodResponse>`;
}

/** A `<methodCall>` (for tests that speak XML-RPC without a client library). */
export function formatMethodCall(method: string, params: unknown[]): string {
  const body = params.map((param) => `<param>${encodeValue(param)}</param>`).join("");
  return `<?xml version="1.0"?><methodCall><methodName>${escapeXmlText(method)}</methodName><params>${body}</params></methodCall>`;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading: a strict little XML reader (elements, text, references, CDATA, comments, declarations; no DTD).

interface XmlElement {
  name: string;
  children: XmlNode[];
}
type XmlNode = XmlElement | string;

const NAMED_ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function decodeReferences(text: string, at: number): string {
  return text.replace(/&([^;&<>\s]*);?/g, (whole, body: string) => {
    if (!whole.endsWith(";")) throw new XmlRpcParseError(`unterminated reference near byte ${at}`);
    if (body in NAMED_ENTITIES) return NAMED_ENTITIES[body];
    const numeric = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(body);
    if (numeric === null) throw new XmlRpcParseError(`unknown entity &${body}; near byte ${at}`);
    const code = numeric[1] !== undefined ? Number.parseInt(numeric[1], 16) : Number(numeric[2]);
    if (code > 0x10ffff || code === 0) throw new XmlRpcParseError(`invalid character reference &${body}; near byte ${at}`);
    return String.fromCodePoint(code);
  });
}

function parseXml(text: string): XmlElement {
  let pos = 0;
  const stack: XmlElement[] = [{ name: "#document", children: [] }];
  const top = () => stack[stack.length - 1];
  while (pos < text.length) {
    const lt = text.indexOf("<", pos);
    const end = lt === -1 ? text.length : lt;
    if (end > pos) {
      const raw = text.slice(pos, end);
      if (stack.length === 1) {
        if (raw.trim() !== "") throw new XmlRpcParseError(`text outside the document element near byte ${pos}`);
      } else top().children.push(decodeReferences(raw, pos));
      pos = end;
      continue;
    }
    if (text.startsWith("<?", pos)) {
      const close = text.indexOf("?>", pos);
      if (close === -1) throw new XmlRpcParseError("unterminated processing instruction");
      pos = close + 2;
    } else if (text.startsWith("<!--", pos)) {
      const close = text.indexOf("-->", pos);
      if (close === -1) throw new XmlRpcParseError("unterminated comment");
      pos = close + 3;
    } else if (text.startsWith("<![CDATA[", pos)) {
      const close = text.indexOf("]]>", pos);
      if (close === -1 || stack.length === 1) throw new XmlRpcParseError(`misplaced or unterminated CDATA near byte ${pos}`);
      top().children.push(text.slice(pos + 9, close));
      pos = close + 3;
    } else if (text.startsWith("<!", pos)) {
      throw new XmlRpcParseError("document type declarations are not accepted");
    } else if (text.startsWith("</", pos)) {
      const match = /^<\/([A-Za-z_][\w.:-]*)\s*>/.exec(text.slice(pos, pos + 300));
      const open = top();
      if (match === null || stack.length === 1 || match[1] !== open.name) {
        throw new XmlRpcParseError(`unexpected close tag near byte ${pos} (open: ${open.name})`);
      }
      stack.pop();
      pos += match[0].length;
      if (stack.length === 1) break;
    } else {
      const match = /^<([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/.exec(
        text.slice(pos, pos + 4096),
      );
      if (match === null) throw new XmlRpcParseError(`malformed tag near byte ${pos}`);
      if (stack.length === 1 && top().children.length > 0) throw new XmlRpcParseError("more than one document element");
      const element: XmlElement = { name: match[1], children: [] };
      top().children.push(element);
      if (match[3] !== "/") stack.push(element);
      pos += match[0].length;
      if (match[3] === "/" && stack.length === 1) break;
    }
  }
  if (stack.length !== 1) throw new XmlRpcParseError(`unexpected end of document inside <${top().name}>`);
  if (
    text
      .slice(pos)
      .replace(/<!--[\s\S]*?-->|<\?[\s\S]*?\?>/g, "")
      .trim() !== ""
  ) {
    throw new XmlRpcParseError("content after the document element");
  }
  const root = stack[0].children[0];
  if (root === undefined || typeof root === "string") throw new XmlRpcParseError("empty document");
  return root;
}

function elementsOf(element: XmlElement): XmlElement[] {
  const elements: XmlElement[] = [];
  for (const child of element.children) {
    if (typeof child !== "string") elements.push(child);
    else if (child.trim() !== "") throw new XmlRpcParseError(`unexpected text in <${element.name}>`);
  }
  return elements;
}

function textOf(element: XmlElement): string {
  let text = "";
  for (const child of element.children) {
    if (typeof child !== "string") throw new XmlRpcParseError(`unexpected <${child.name}> in <${element.name}>`);
    text += child;
  }
  return text;
}

function only(element: XmlElement, name: string): XmlElement {
  const [first, ...rest] = elementsOf(element);
  if (first === undefined || first.name !== name || rest.length > 0)
    throw new XmlRpcParseError(`<${element.name}> must hold one <${name}>`);
  return first;
}

/**
 * Decodes a `<value>` as XAPI's server does: bare text or `<string>` → string; `<int>`, `<i4>`, `<i8>` → number;
 * `<double>` → number; `<boolean>` → boolean; `<dateTime.iso8601>` → its text (the lab keeps dates as XAPI text);
 * `<base64>` → its text (the lab's methods take base64); arrays; structs; `<nil/>` → null.
 */
function decodeValue(element: XmlElement): unknown {
  if (element.name !== "value") throw new XmlRpcParseError(`expected <value>, found <${element.name}>`);
  if (element.children.every((child) => typeof child === "string")) return textOf(element);
  const typed = elementsOf(element);
  if (typed.length > 1) throw new XmlRpcParseError("a <value> holds one typed element");
  const [inner] = typed;
  switch (inner.name) {
    case "string":
      return textOf(inner);
    case "int":
    case "i4":
    case "i8": {
      const text = textOf(inner).trim();
      if (!/^[+-]?\d+$/.test(text)) throw new XmlRpcParseError(`<${inner.name}>${text}</${inner.name}> is not an integer`);
      return Number(text);
    }
    case "double": {
      const text = textOf(inner).trim();
      const number = Number(text);
      if (text === "" || Number.isNaN(number)) throw new XmlRpcParseError(`<double>${text}</double> is not a number`);
      return number;
    }
    case "boolean": {
      const text = textOf(inner).trim();
      if (text !== "0" && text !== "1") throw new XmlRpcParseError(`<boolean>${text}</boolean> is not 0 or 1`);
      return text === "1";
    }
    case "dateTime.iso8601":
      return textOf(inner).trim();
    case "base64":
      return textOf(inner).replace(/\s+/g, "");
    case "nil":
      if (inner.children.length > 0) throw new XmlRpcParseError("<nil/> must be empty");
      return null;
    case "array": {
      const data = only(inner, "data");
      return elementsOf(data).map(decodeValue);
    }
    case "struct": {
      const struct: Record<string, unknown> = {};
      for (const member of elementsOf(inner)) {
        if (member.name !== "member") throw new XmlRpcParseError(`expected <member>, found <${member.name}>`);
        const parts = elementsOf(member);
        if (parts.length !== 2 || parts[0].name !== "name") throw new XmlRpcParseError("a <member> holds <name> then <value>");
        Object.defineProperty(struct, textOf(parts[0]), {
          value: decodeValue(parts[1]),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return struct;
    }
    default:
      throw new XmlRpcParseError(`unknown XML-RPC type <${inner.name}>`);
  }
}

/** Parses a `<methodCall>` body; throws {@link XmlRpcParseError} on anything else. */
export function parseMethodCall(text: string): MethodCall {
  const root = parseXml(text);
  if (root.name !== "methodCall") throw new XmlRpcParseError(`expected <methodCall>, found <${root.name}>`);
  const parts = elementsOf(root);
  if (parts[0]?.name !== "methodName") throw new XmlRpcParseError("<methodCall> starts with <methodName>");
  const method = textOf(parts[0]).trim();
  if (method === "") throw new XmlRpcParseError("empty <methodName>");
  if (parts.length > 2 || (parts[1] !== undefined && parts[1].name !== "params"))
    throw new XmlRpcParseError("<methodCall> holds <methodName> and <params>");
  const params =
    parts[1] === undefined
      ? []
      : elementsOf(parts[1]).map((param) => {
          if (param.name !== "param") throw new XmlRpcParseError(`expected <param>, found <${param.name}>`);
          return decodeValue(only(param, "value"));
        });
  return { method, params };
}

/** Parses a `<methodResponse>` into its one value (for tests): datetimes, doubles and i4s come back as the marker classes. */
export function parseMethodResponse(text: string): unknown {
  const root = parseXml(text);
  if (root.name !== "methodResponse") throw new XmlRpcParseError(`expected <methodResponse>, found <${root.name}>`);
  const param = only(only(root, "params"), "param");
  return decodeTyped(only(param, "value"));
}

function decodeTyped(element: XmlElement): unknown {
  const typed = element.children.filter((child): child is XmlElement => typeof child !== "string");
  const inner = typed[0];
  if (inner === undefined) return textOf(element);
  if (inner.name === "dateTime.iso8601") return new XmlRpcDateTime(textOf(inner));
  if (inner.name === "double") return new XmlRpcDouble(Number(textOf(inner)));
  if (inner.name === "i4") return new XmlRpcInt32(Number(textOf(inner)));
  if (inner.name === "array") return elementsOf(only(inner, "data")).map(decodeTyped);
  if (inner.name === "struct") {
    const struct: Record<string, unknown> = {};
    for (const member of elementsOf(inner)) {
      const [name, value] = elementsOf(member);
      Object.defineProperty(struct, textOf(name), { value: decodeTyped(value), enumerable: true, writable: true, configurable: true });
    }
    return struct;
  }
  return decodeValue(element);
}

/** Parses a document that is one `<value>` (XAPI reads ova.xml so: `Xmlrpc.of_string`); throws {@link XmlRpcParseError}. */
export function parseValueDocument(text: string): unknown {
  return decodeValue(parseXml(text));
}
