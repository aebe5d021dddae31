/**
 * Rewrites the identity of a streamed dynamic or differencing VHD as it passes: the footer's unique id (both copies) and, for
 * a differencing disk, the header's parent id, name and locators. XAPI's export gives random ids, so a backup tool sets its
 * own: each VHD on a remote is named by the snapshot disk it holds, and its parent id is the previous one's, so chains link
 * by id (research/xapi-protocol.md §5.2). Streaming: it holds back only the first 1536 and the last 512 bytes.
 */
import { Transform, type TransformCallback } from "node:stream";
import { DiskType, FOOTER_SIZE, HEADER_SIZE } from "./constants.js";
import { decodeFooter, encodeFooter } from "./footer.js";
import { decodeHeader, emptyLocators, encodeHeader } from "./header.js";
import { VhdError } from "./vhd-error.js";

export interface VhdIdentity {
  uuid: string;
  /** Required for a differencing VHD; refused for a dynamic one. */
  parent?: { uuid: string; name: string };
}

const PREFIX = FOOTER_SIZE + HEADER_SIZE;

export function rewriteVhdIdentity(identity: VhdIdentity, name = "VHD stream"): Transform {
  let head: Buffer[] = [];
  let headLength = 0;
  let headDone = false;
  let tail = Buffer.alloc(0);
  let diskType: DiskType | undefined;

  const rewriteFooter = (buf: Buffer, offset: number, structure: string) => {
    const footer = decodeFooter(buf, { file: name, offset }, structure);
    if (diskType !== undefined && footer.diskType !== diskType) {
      throw new VhdError("VHD_BAD_FIELD", `the trailing footer's disk type ${footer.diskType} differs from the first copy's ${diskType}`, { file: name, structure, offset });
    }
    diskType = footer.diskType;
    return encodeFooter({ ...footer, uuid: identity.uuid });
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        if (!headDone) {
          head.push(chunk);
          headLength += chunk.length;
          if (headLength < PREFIX) return callback();
          const all = Buffer.concat(head);
          head = [];
          headDone = true;
          const footer = rewriteFooter(all.subarray(0, FOOTER_SIZE), 0, "footer copy");
          const header = decodeHeader(all.subarray(FOOTER_SIZE, PREFIX), { file: name, offset: FOOTER_SIZE });
          if (diskType === DiskType.Differencing && !identity.parent) {
            throw new VhdError("VHD_PARENT_MISMATCH", "a differencing VHD arrived where a full one was expected", { file: name, structure: "footer copy", offset: 0 });
          }
          if (diskType === DiskType.Dynamic && identity.parent) {
            throw new VhdError("VHD_PARENT_MISMATCH", "a dynamic VHD arrived where a differencing one was expected", { file: name, structure: "footer copy", offset: 0 });
          }
          const newHeader = identity.parent
            ? encodeHeader({ ...header, parentUuid: identity.parent.uuid, parentUnicodeName: identity.parent.name, parentLocators: emptyLocators() })
            : all.subarray(FOOTER_SIZE, PREFIX);
          chunk = Buffer.concat([footer, newHeader, all.subarray(PREFIX)]);
        }
        const joined = tail.length ? Buffer.concat([tail, chunk]) : chunk;
        const keep = Math.min(FOOTER_SIZE, joined.length);
        tail = Buffer.from(joined.subarray(joined.length - keep));
        if (joined.length > keep) this.push(joined.subarray(0, joined.length - keep));
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        if (!headDone || tail.length < FOOTER_SIZE) {
          throw new VhdError("VHD_TRUNCATED", "the stream ended before its trailing footer", { file: name, structure: "footer", offset: headLength });
        }
        this.push(rewriteFooter(tail, -1, "footer"));
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
