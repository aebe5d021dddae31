/**
 * NFS version 3 (RFC 1813), MOUNT version 3 (RFC 1813 appendix I) and PORTMAP version 2 (RFC 1057 appendix A), as far as
 * a remote needs them. Each procedure encodes its arguments, sends them through an {@link RpcClient} and decodes its
 * results; a status other than NFS3_OK is thrown as an {@link Nfs3Error}. PROTOCOL.md says what is sent and why.
 */
import { RpcClient, type AuthSys } from "./rpc.js";
import { type XdrReader, XdrWriter } from "./xdr.js";

export const NFS_PROGRAM = 100003;
export const MOUNT_PROGRAM = 100005;
export const PORTMAP_PROGRAM = 100000;
const PORTMAP_PORT = 111;
const IPPROTO_TCP = 6;

/** An NFSv3 file handle: opaque, at most 64 bytes. */
export type FileHandle = Buffer;

/** nftype3 */
export const FileType = { REG: 1, DIR: 2, BLK: 3, CHR: 4, LNK: 5, SOCK: 6, FIFO: 7 } as const;

/** ACCESS3 bits */
export const Access = { READ: 0x01, LOOKUP: 0x02, MODIFY: 0x04, EXTEND: 0x08, DELETE: 0x10, EXECUTE: 0x20 } as const;

/** stable_how */
export const Stable = { UNSTABLE: 0, DATA_SYNC: 1, FILE_SYNC: 2 } as const;

/** The nfsstat3 values by name (RFC 1813 section 2.6). */
export const NFS3_STATUS: Record<number, string> = {
  1: "NFS3ERR_PERM",
  2: "NFS3ERR_NOENT",
  5: "NFS3ERR_IO",
  6: "NFS3ERR_NXIO",
  13: "NFS3ERR_ACCES",
  17: "NFS3ERR_EXIST",
  18: "NFS3ERR_XDEV",
  19: "NFS3ERR_NODEV",
  20: "NFS3ERR_NOTDIR",
  21: "NFS3ERR_ISDIR",
  22: "NFS3ERR_INVAL",
  27: "NFS3ERR_FBIG",
  28: "NFS3ERR_NOSPC",
  30: "NFS3ERR_ROFS",
  31: "NFS3ERR_MLINK",
  63: "NFS3ERR_NAMETOOLONG",
  66: "NFS3ERR_NOTEMPTY",
  69: "NFS3ERR_DQUOT",
  70: "NFS3ERR_STALE",
  71: "NFS3ERR_REMOTE",
  10001: "NFS3ERR_BADHANDLE",
  10002: "NFS3ERR_NOT_SYNC",
  10003: "NFS3ERR_BAD_COOKIE",
  10004: "NFS3ERR_NOTSUPP",
  10005: "NFS3ERR_TOOSMALL",
  10006: "NFS3ERR_SERVERFAULT",
  10007: "NFS3ERR_BADTYPE",
  10008: "NFS3ERR_JUKEBOX",
};

/** The mountstat3 values by name (RFC 1813 appendix I). */
const MOUNT3_STATUS: Record<number, string> = {
  1: "MNT3ERR_PERM",
  2: "MNT3ERR_NOENT",
  5: "MNT3ERR_IO",
  13: "MNT3ERR_ACCES",
  20: "MNT3ERR_NOTDIR",
  22: "MNT3ERR_INVAL",
  63: "MNT3ERR_NAMETOOLONG",
  10004: "MNT3ERR_NOTSUPP",
  10006: "MNT3ERR_SERVERFAULT",
};

/** A status other than OK in an NFS or MOUNT reply. `status` is the symbolic name (NFS3ERR_NOENT, MNT3ERR_ACCES...). */
export class Nfs3Error extends Error {
  constructor(
    readonly status: string,
    readonly procedure: string,
  ) {
    super(`the server answered ${procedure} with ${status}`);
    this.name = "Nfs3Error";
  }
}

/** The file attributes a remote uses (fattr3, RFC 1813 section 2.6). */
export interface Attributes {
  type: number;
  mode: number;
  size: number;
  mtime: Date;
}

/** A directory entry of READDIRPLUS; the attributes and handle may be absent (the server may omit them). */
export interface DirEntry {
  name: string;
  attributes?: Attributes;
  handle?: FileHandle;
}

export interface FsStat {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
}

export interface FsInfo {
  rtmax: number;
  rtpref: number;
  wtmax: number;
  wtpref: number;
  dtpref: number;
}

function nfstime(reader: XdrReader): Date {
  const seconds = reader.uint32();
  const nanoseconds = reader.uint32();
  return new Date(seconds * 1000 + Math.floor(nanoseconds / 1e6));
}

function fattr3(reader: XdrReader): Attributes {
  const type = reader.uint32();
  const mode = reader.uint32();
  reader.skip(12); // nlink, uid, gid
  const size = reader.uint64();
  reader.skip(8 + 8 + 8 + 8 + 8); // used, rdev, fsid, fileid, atime
  const mtime = nfstime(reader);
  reader.skip(8); // ctime
  return { type, mode, size, mtime };
}

function postOpAttr(reader: XdrReader): Attributes | undefined {
  return reader.bool() ? fattr3(reader) : undefined;
}

function wccData(reader: XdrReader): Attributes | undefined {
  if (reader.bool()) reader.skip(8 + 8 + 8); // pre_op_attr: size, mtime, ctime
  return postOpAttr(reader);
}

function postOpFh(reader: XdrReader): FileHandle | undefined {
  return reader.bool() ? Buffer.from(reader.opaque(64)) : undefined;
}

/** sattr3 with only the fields we set. */
function sattr3(writer: XdrWriter, set: { mode?: number; size?: number; mtimeNow?: boolean }): XdrWriter {
  writer.bool(set.mode !== undefined);
  if (set.mode !== undefined) writer.uint32(set.mode);
  writer.bool(false).bool(false); // uid, gid
  writer.bool(set.size !== undefined);
  if (set.size !== undefined) writer.uint64(set.size);
  writer.uint32(set.mtimeNow === true ? 1 : 0); // atime: SET_TO_SERVER_TIME or DONT_CHANGE
  writer.uint32(set.mtimeNow === true ? 1 : 0); // mtime
  return writer;
}

/** The procedures of NFS version 3 this client speaks, by number. */
const PROC = {
  NULL: 0,
  GETATTR: 1,
  SETATTR: 2,
  LOOKUP: 3,
  ACCESS: 4,
  READ: 6,
  WRITE: 7,
  CREATE: 8,
  MKDIR: 9,
  REMOVE: 12,
  RMDIR: 13,
  RENAME: 14,
  READDIRPLUS: 17,
  FSSTAT: 18,
  FSINFO: 19,
  COMMIT: 21,
} as const;

/** NFS version 3 over one RPC connection. */
export class Nfs3Client {
  private readonly rpc: RpcClient;

  constructor(options: { host: string; port: number; auth: AuthSys; timeoutMs: number }) {
    this.rpc = new RpcClient({ ...options, program: NFS_PROGRAM, version: 3 });
  }

  close(): void {
    this.rpc.close();
  }

  private async call(name: keyof typeof PROC, args?: XdrWriter): Promise<XdrReader> {
    return this.rpc.call(PROC[name], args);
  }

  /** Reads the status and throws it unless NFS3_OK (what a failed reply carries after it is not needed). */
  private status(reader: XdrReader, procedure: string): void {
    const status = reader.uint32();
    if (status !== 0) throw new Nfs3Error(NFS3_STATUS[status] ?? `nfsstat3 ${status}`, procedure);
  }

  async null(): Promise<void> {
    await this.call("NULL");
  }

  async getattr(handle: FileHandle): Promise<Attributes> {
    const reader = await this.call("GETATTR", new XdrWriter().opaque(handle));
    this.status(reader, "GETATTR");
    return fattr3(reader);
  }

  /** SETATTR of the size (a truncate or an extension with zeros) and/or the mode; mtime set to the server's time. */
  async setattr(handle: FileHandle, set: { size?: number; mode?: number; mtimeNow?: boolean }): Promise<void> {
    const writer = sattr3(new XdrWriter().opaque(handle), set).bool(false); // no guard
    this.status(await this.call("SETATTR", writer), "SETATTR");
  }

  async lookup(directory: FileHandle, name: string): Promise<{ handle: FileHandle; attributes?: Attributes }> {
    const reader = await this.call("LOOKUP", new XdrWriter().opaque(directory).string(name));
    this.status(reader, "LOOKUP");
    const handle = Buffer.from(reader.opaque(64));
    return { handle, attributes: postOpAttr(reader) };
  }

  /** The ACCESS3 bits of `wanted` the server grants to our credentials. */
  async access(handle: FileHandle, wanted: number): Promise<number> {
    const reader = await this.call("ACCESS", new XdrWriter().opaque(handle).uint32(wanted));
    this.status(reader, "ACCESS");
    postOpAttr(reader);
    return reader.uint32();
  }

  /** Up to `count` bytes at `offset`; `eof` when the read reached the end of the file. The data is a view of the reply. */
  async read(handle: FileHandle, offset: number, count: number): Promise<{ data: Buffer; eof: boolean }> {
    const reader = await this.call("READ", new XdrWriter().opaque(handle).uint64(offset).uint32(count));
    this.status(reader, "READ");
    postOpAttr(reader);
    reader.uint32(); // count, repeated by the opaque's length
    const eof = reader.bool();
    return { data: reader.opaque(), eof };
  }

  /** Writes `data` at `offset`; the server may store fewer bytes (`count`) and tells how stable they are and its verifier. */
  async write(
    handle: FileHandle,
    offset: number,
    data: Uint8Array,
    stable: number,
  ): Promise<{ count: number; committed: number; verifier: Buffer }> {
    const writer = new XdrWriter().opaque(handle).uint64(offset).uint32(data.length).uint32(stable).opaque(data);
    const reader = await this.call("WRITE", writer);
    this.status(reader, "WRITE");
    wccData(reader);
    const count = reader.uint32();
    const committed = reader.uint32();
    return { count, committed, verifier: Buffer.from(reader.fixed(8)) };
  }

  /** COMMIT of the whole file (offset 0, count 0); the verifier to compare with those of the UNSTABLE writes. */
  async commit(handle: FileHandle): Promise<Buffer> {
    const reader = await this.call("COMMIT", new XdrWriter().opaque(handle).uint64(0).uint32(0));
    this.status(reader, "COMMIT");
    wccData(reader);
    return Buffer.from(reader.fixed(8));
  }

  /**
   * CREATE in `directory`: GUARDED with `mode` (fails with NFS3ERR_EXIST when the name exists), or EXCLUSIVE with an 8-byte
   * verifier (also fails with NFS3ERR_EXIST, unless the existing file was made by this very request, RFC 1813 section 3.3.8).
   */
  async create(
    directory: FileHandle,
    name: string,
    how: { guarded: { mode: number } } | { exclusive: Buffer },
  ): Promise<{ handle?: FileHandle; attributes?: Attributes }> {
    const writer = new XdrWriter().opaque(directory).string(name);
    if ("guarded" in how) sattr3(writer.uint32(1), { mode: how.guarded.mode });
    else writer.uint32(2).fixed(how.exclusive);
    const reader = await this.call("CREATE", writer);
    this.status(reader, "CREATE");
    const handle = postOpFh(reader);
    return { handle, attributes: postOpAttr(reader) };
  }

  async mkdir(directory: FileHandle, name: string, mode: number): Promise<{ handle?: FileHandle }> {
    const reader = await this.call("MKDIR", sattr3(new XdrWriter().opaque(directory).string(name), { mode }));
    this.status(reader, "MKDIR");
    return { handle: postOpFh(reader) };
  }

  async remove(directory: FileHandle, name: string): Promise<void> {
    this.status(await this.call("REMOVE", new XdrWriter().opaque(directory).string(name)), "REMOVE");
  }

  async rmdir(directory: FileHandle, name: string): Promise<void> {
    this.status(await this.call("RMDIR", new XdrWriter().opaque(directory).string(name)), "RMDIR");
  }

  async rename(fromDirectory: FileHandle, fromName: string, toDirectory: FileHandle, toName: string): Promise<void> {
    const writer = new XdrWriter().opaque(fromDirectory).string(fromName).opaque(toDirectory).string(toName);
    this.status(await this.call("RENAME", writer), "RENAME");
  }

  /** Every entry of a directory but "." and "..", following cookies through all pages. */
  async readdirplus(directory: FileHandle): Promise<DirEntry[]> {
    const entries: DirEntry[] = [];
    let cookie = 0n;
    let verifier = Buffer.alloc(8);
    for (;;) {
      const writer = new XdrWriter()
        .opaque(directory)
        .uint64(cookie)
        .fixed(verifier)
        .uint32(32 * 1024)
        .uint32(256 * 1024);
      const reader = await this.call("READDIRPLUS", writer);
      this.status(reader, "READDIRPLUS");
      postOpAttr(reader);
      verifier = Buffer.from(reader.fixed(8));
      let entriesInPage = 0;
      while (reader.bool()) {
        reader.uint64Big(); // fileid
        const name = reader.string(255);
        cookie = reader.uint64Big();
        const attributes = postOpAttr(reader);
        const handle = postOpFh(reader);
        entriesInPage += 1;
        if (name !== "." && name !== "..") entries.push({ name, attributes, handle });
      }
      const eof = reader.bool();
      if (eof) return entries;
      // A server that says "more" but sends nothing would loop forever.
      if (entriesInPage === 0) throw new Nfs3Error("NFS3ERR_TOOSMALL", "READDIRPLUS");
    }
  }

  async fsstat(handle: FileHandle): Promise<FsStat> {
    const reader = await this.call("FSSTAT", new XdrWriter().opaque(handle));
    this.status(reader, "FSSTAT");
    postOpAttr(reader);
    const totalBytes = reader.uint64();
    const freeBytes = reader.uint64();
    const availableBytes = reader.uint64();
    return { totalBytes, freeBytes, availableBytes };
  }

  async fsinfo(handle: FileHandle): Promise<FsInfo> {
    const reader = await this.call("FSINFO", new XdrWriter().opaque(handle));
    this.status(reader, "FSINFO");
    postOpAttr(reader);
    const rtmax = reader.uint32();
    const rtpref = reader.uint32();
    reader.uint32(); // rtmult
    const wtmax = reader.uint32();
    const wtpref = reader.uint32();
    reader.uint32(); // wtmult
    const dtpref = reader.uint32();
    return { rtmax, rtpref, wtmax, wtpref, dtpref };
  }
}

/** MOUNT version 3: MNT gives the root handle of an export, UMNT tells the server we are done (advisory). */
export class MountClient {
  private readonly rpc: RpcClient;

  constructor(options: { host: string; port: number; auth: AuthSys; timeoutMs: number }) {
    this.rpc = new RpcClient({ ...options, program: MOUNT_PROGRAM, version: 3 });
  }

  async mount(exportPath: string): Promise<FileHandle> {
    const reader = await this.rpc.call(1, new XdrWriter().string(exportPath));
    const status = reader.uint32();
    if (status !== 0) throw new Nfs3Error(MOUNT3_STATUS[status] ?? `mountstat3 ${status}`, "MNT");
    return Buffer.from(reader.opaque(64));
  }

  async unmount(exportPath: string): Promise<void> {
    await this.rpc.call(3, new XdrWriter().string(exportPath));
  }

  close(): void {
    this.rpc.close();
  }
}

/** PORTMAP GETPORT for a program's TCP port; 0 when the program is not registered. */
export async function getPort(host: string, program: number, version: number, timeoutMs: number): Promise<number> {
  const rpc = new RpcClient({ host, port: PORTMAP_PORT, program: PORTMAP_PROGRAM, version: 2, timeoutMs });
  try {
    const reader = await rpc.call(3, new XdrWriter().uint32(program).uint32(version).uint32(IPPROTO_TCP).uint32(0));
    return reader.uint32();
  } finally {
    rpc.close();
  }
}
