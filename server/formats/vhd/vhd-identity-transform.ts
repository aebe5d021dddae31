/**
 * Rewrites the identity of a streamed dynamic or differencing VHD as it passes: the footer's unique id (both copies) and, for
 * a differencing disk, the header's parent id, name and locators. XAPI's export gives random ids, so a backup tool sets its
 * own: each VHD on a remote is named by the snapshot disk it holds, and its parent id is the previous one's, so chains link
 * by id (research/xapi-protocol.md §5.2). Streaming: it holds back the first 1536 bytes and the latest chunk (for the trailing footer), copying neither.
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
  // The latest chunk, held back whole (not copied): the trailing footer is in the last 512 bytes of the stream, so what
  // comes before can only be let through once more data has arrived. Always at least 512 bytes once the head is done.
  let pending: Buffer | undefined;
  let diskType: DiskType | undefined;

  const rewriteFooter = (buf: Buffer, offset: number, structure: string) => {
    const footer = decodeFooter(buf, { file: name, offset }, structure);
    if (diskType !== undefined && footer.diskType !== diskType) {
      throw new VhdError("VHD_BAD_FIELD", `the trailing footer's disk type ${footer.diskType} differs from the first copy's ${diskType}`, {
        file: name,
        structure,
        offset,
      });
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
            throw new VhdError("VHD_PARENT_MISMATCH", "a differencing VHD arrived where a full one was expected", {
              file: name,
              structure: "footer copy",
              offset: 0,
            });
          }
          if (diskType === DiskType.Dynamic && identity.parent) {
            throw new VhdError("VHD_PARENT_MISMATCH", "a dynamic VHD arrived where a differencing one was expected", {
              file: name,
              structure: "footer copy",
              offset: 0,
            });
          }
          const newHeader = identity.parent
            ? encodeHeader({
                ...header,
                parentUuid: identity.parent.uuid,
                parentUnicodeName: identity.parent.name,
                parentLocators: emptyLocators(),
              })
            : all.subarray(FOOTER_SIZE, PREFIX);
          chunk = Buffer.concat([footer, newHeader, all.subarray(PREFIX)]);
        }
        if (pending === undefined) {
          pending = chunk; // the head: at least PREFIX bytes
        } else if (chunk.length >= FOOTER_SIZE) {
          this.push(pending);
          pending = chunk;
        } else {
          // A small chunk: keep only the last 512 bytes of the stream back (a copy of at most 1023 bytes).
          if (pending.length > FOOTER_SIZE) this.push(pending.subarray(0, pending.length - FOOTER_SIZE));
          pending = Buffer.concat([pending.subarray(pending.length - FOOTER_SIZE), chunk]);
        }
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        if (!headDone || pending === undefined || pending.length < FOOTER_SIZE) {
          throw new VhdError("VHD_TRUNCATED", "the stream ended before its trailing footer", {
            file: name,
            structure: "footer",
            offset: headLength,
          });
        }
        const footerAt = pending.length - FOOTER_SIZE;
        const footer = rewriteFooter(pending.subarray(footerAt), -1, "footer");
        if (footerAt > 0) this.push(pending.subarray(0, footerAt));
        pending = undefined;
        this.push(footer);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
