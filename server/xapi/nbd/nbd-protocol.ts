/** The numbers of the NBD protocol (NetworkBlockDevice/nbd `doc/proto.md`) that Cairn's client uses. */
export const NBD_MAGIC = Buffer.from("NBDMAGIC");
export const IHAVEOPT = 0x49484156454f5054n;
/** The second magic of an oldstyle server (no options, no export names): Cairn does not speak it. */
export const OLDSTYLE_MAGIC = 0x00420281861253n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

export const OPT_EXPORT_NAME = 1;
export const OPT_STARTTLS = 5;
export const OPT_GO = 7;

export const REP_ACK = 1;
export const REP_INFO = 3;
/** Option replies with this bit set are errors. */
export const REP_FLAG_ERROR = 0x80000000;
export const REP_ERR_UNSUP = 0x80000001;
export const REP_ERR_POLICY = 0x80000002;
export const REP_ERR_TLS_REQD = 0x80000005;
export const REP_ERR_UNKNOWN = 0x80000006;

export const INFO_EXPORT = 0;
export const INFO_BLOCK_SIZE = 3;

export const TFLAG_READ_ONLY = 2;
export const TFLAG_CAN_MULTI_CONN = 0x100;

export const CMD_READ = 0;
export const CMD_DISC = 2;

/** Reads are split at this size: the protocol's common limit (servers may refuse more). */
export const MAX_READ = 32 * 1024 * 1024;

/** errno values servers answer with, as names for messages. */
export const NBD_ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  5: "EIO",
  12: "ENOMEM",
  22: "EINVAL",
  28: "ENOSPC",
  75: "EOVERFLOW",
  95: "ENOTSUP",
  108: "ESHUTDOWN",
};
