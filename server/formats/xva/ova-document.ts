/** One object of ova.xml: its XAPI class, its export-local id ("Ref:12") and its record. */
export interface OvaObject {
  class: string;
  id: string;
  snapshot: Record<string, unknown>;
}

/** The whole of ova.xml: the `version` struct and the exported objects. */
export interface OvaDocument {
  version: Record<string, string | number>;
  objects: OvaObject[];
}
