import { describe, expect, it } from "vitest";
import { XvaError, buildOvaXml, parseOvaXml } from "../../server/formats/xva/index.js";
import { sampleOva } from "./support/xva-helpers.js";

describe("ova.xml", () => {
  it("round-trips a document with strings, ints, doubles, booleans, dates, arrays and structs", () => {
    const doc = sampleOva([{ ref: "Ref:10", size: 1024 }]);
    const xml = buildOvaXml(doc);
    expect(xml.startsWith("<value><struct>")).toBe(true);
    expect(xml).toContain("<value>web &lt;01&gt; &amp; co</value>");
    expect(xml).toContain("<dateTime.iso8601>20240501T10:20:30Z</dateTime.iso8601>");
    expect(parseOvaXml(xml)).toEqual(doc);
  });

  it("reads XAPI's style: bare strings for int64 fields, <i4>, <string>, <nil/>, a prolog and whitespace", () => {
    const xml = `<?xml version="1.0"?>
      <value><struct>
        <member><name>version</name><value><struct>
          <member><name>xapi_major</name><value><i4>1</i4></value></member>
          <member><name>hostname</name><value><string>h&#65;</string></value></member>
        </struct></value></member>
        <member><name>objects</name><value><array><data>
          <value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>Ref:7</value></member>
          <member><name>snapshot</name><value><struct><member><name>virtual_size</name><value>10737418240</value></member>
          <member><name>sharable</name><value><boolean>0</boolean></value></member>
          <member><name>empty</name><value/></member><member><name>none</name><value><nil/></value></member></struct></value></member></struct></value>
        </data></array></value></member>
      </struct></value>`;
    const doc = parseOvaXml(xml);
    expect(doc.version).toEqual({ xapi_major: 1, hostname: "hA" });
    expect(doc.objects[0]).toEqual({
      class: "VDI",
      id: "Ref:7",
      snapshot: { virtual_size: "10737418240", sharable: false, empty: "", none: null },
    });
  });

  it("rejects malformed XML with XVA_BAD_OVA naming the offset", () => {
    const error = (() => {
      try {
        parseOvaXml("<value><struct><member><name>version</name><value><int>x1</int></value></member></struct></value>");
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(XvaError);
    expect((error as XvaError).code).toBe("XVA_BAD_OVA");
    expect((error as XvaError).message).toMatch(/^XVA_BAD_OVA: <int> holds "x1", not an integer \(entry ova\.xml, at offset \d+\)$/);
  });

  it("rejects a document without its objects array", () => {
    expect(() =>
      parseOvaXml("<value><struct><member><name>version</name><value><struct></struct></value></member></struct></value>"),
    ).toThrow("XVA_BAD_OVA: the objects array is missing (entry ova.xml)");
  });

  it("refuses values XML-RPC cannot carry when building", () => {
    expect(() => buildOvaXml({ version: {}, objects: [{ class: "VM", id: "Ref:1", snapshot: { x: Number.NaN } }] })).toThrow(
      "XVA_BAD_INPUT: value.objects[0].snapshot.x is NaN, which XML-RPC cannot carry",
    );
  });
});
