import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createRemote, type RemoteConfig } from "../../server/remotes/create-remote.js";
import { LocalRemote } from "../../server/remotes/local-remote.js";
import { NfsRemote } from "../../server/remotes/nfs-remote.js";
import { RemoteError } from "../../server/remotes/remote-error.js";
import { S3Remote } from "../../server/remotes/s3-remote.js";
import { SmbRemote } from "../../server/remotes/smb-remote.js";

/** The INVALID_CONFIG error `createRemote(config)` throws. */
function refusal(config: unknown): RemoteError {
  try {
    createRemote(config as RemoteConfig);
  } catch (error) {
    expect(error).toBeInstanceOf(RemoteError);
    expect((error as RemoteError).code).toBe("INVALID_CONFIG");
    return error as RemoteError;
  }
  throw new Error(`expected INVALID_CONFIG for ${JSON.stringify(config)}`);
}

const s3 = (extra: Partial<RemoteConfig> = {}): RemoteConfig => ({
  kind: "S3",
  location: "backups/cairn",
  username: "AKIAEXAMPLE",
  password: "very-secret-key",
  options: { endpoint: "https://s3.example.net:9000", region: "eu-west-1" },
  ...extra,
});

describe("createRemote", () => {
  it("builds a local remote that works on an absolute folder", async () => {
    const folder = await mkdtemp(join(tmpdir(), "cairn-create-remote-"));
    try {
      const remote = createRemote({ kind: "LOCAL", location: folder });
      expect(remote).toBeInstanceOf(LocalRemote);
      await remote.writeFile("hello.txt", "hi");
      expect(await remote.list("")).toEqual(["hello.txt"]);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  it("builds an S3 remote whose name shows endpoint, bucket and prefix but no secret", () => {
    const remote = createRemote(s3());
    expect(remote).toBeInstanceOf(S3Remote);
    expect(remote.name).toBe('S3 remote "s3.example.net:9000/backups/cairn"');
  });

  it.each([
    [{ kind: "FTP", location: "/x" }, "kind"],
    [{ kind: "LOCAL", location: "" }, "location"],
    [{ kind: "LOCAL", location: "relative/path" }, "location"],
    [{ kind: "LOCAL", location: "/srv/backups", options: { mode: 1 } }, "options.mode"],
    [{ kind: "LOCAL", location: "/srv/backups", password: "x" }, "password"],
    [{ kind: "LOCAL", location: "/srv/backups", options: [] }, "options"],
    [s3({ location: "Bad_Bucket" }), "location"],
    [s3({ location: "backups/../escape" }), "location"],
    [s3({ username: undefined }), "username"],
    [s3({ password: "" }), "password"],
    [s3({ options: { endpoint: "ftp://x" } }), "options.endpoint"],
    [s3({ options: { endpoint: "not a url" } }), "options.endpoint"],
    [s3({ options: { endpoint: "https://user:pw@s3.example.net" } }), "options.endpoint"],
    [s3({ options: { forcePathStyle: "yes" } }), "options.forcePathStyle"],
    [s3({ options: { partSizeMiB: 1 } }), "options.partSizeMiB"],
    [s3({ options: { regoin: "eu-west-1" } }), "options.regoin"],
  ])("refuses %j naming the field %s", (config, field) => {
    const error = refusal(config);
    expect(error.field).toBe(field);
    expect(error.message).toContain(`field "${field}"`);
    expect(error.message).not.toContain("very-secret-key");
  });

  it("builds an SMB remote from //host:port/share/folder", () => {
    const remote = createRemote({ kind: "SMB", location: "//nas.example.net:4450/backups/cairn", username: "u", password: "pw-secret" });
    expect(remote).toBeInstanceOf(SmbRemote);
    expect(remote.name).toBe('SMB remote "//nas.example.net:4450/backups/cairn"');
  });

  it.each([
    [{ kind: "SMB", location: "\\\\host\\share", username: "u", password: "p" }, "location"],
    [{ kind: "SMB", location: "//host", username: "u", password: "p" }, "location"],
    [{ kind: "SMB", location: "//host:99999/share", username: "u", password: "p" }, "location"],
    [{ kind: "SMB", location: "//host/share/../x", username: "u", password: "p" }, "location"],
    [{ kind: "SMB", location: "//host/share", password: "p" }, "username"],
    [{ kind: "SMB", location: "//host/share", username: "u" }, "password"],
    [{ kind: "SMB", location: "//host/share", username: "u", password: "p", options: { domian: "X" } }, "options.domian"],
  ])("refuses the SMB config %j naming the field %s", (config, field) => {
    const error = refusal(config);
    expect(error.field).toBe(field);
    expect(error.message).toContain(`field "${field}"`);
  });

  it("builds an NFS remote from nfs://host:port/export/folder, showing no credentials", () => {
    const remote = createRemote({
      kind: "NFS",
      location: "nfs://nas.example.net:2050/srv/backups/cairn",
      options: { mountPort: 20048, uid: 1000 },
    });
    expect(remote).toBeInstanceOf(NfsRemote);
    expect(remote.name).toBe('NFS remote "nfs://nas.example.net:2050/srv/backups/cairn"');
    expect(createRemote({ kind: "NFS", location: "nfs://[fd00::5]/export" }).name).toBe('NFS remote "nfs://[fd00::5]/export"');
  });

  it.each([
    [{ kind: "NFS", location: "nas:/export" }, "location"],
    [{ kind: "NFS", location: "nfs://nas" }, "location"],
    [{ kind: "NFS", location: "nfs://nas:70000/export" }, "location"],
    [{ kind: "NFS", location: "nfs://nas/export/../etc" }, "location"],
    [{ kind: "NFS", location: "nfs://nas/export", username: "u" }, "username"],
    [{ kind: "NFS", location: "nfs://nas/export", password: "p" }, "password"],
    [{ kind: "NFS", location: "nfs://nas/export", options: { mountPort: 0 } }, "options.mountPort"],
    [{ kind: "NFS", location: "nfs://nas/export", options: { uid: -1 } }, "options.uid"],
    [{ kind: "NFS", location: "nfs://nas/export", options: { gid: "0" } }, "options.gid"],
    [{ kind: "NFS", location: "nfs://nas/export", options: { timeoutMs: 10 } }, "options.timeoutMs"],
    [{ kind: "NFS", location: "nfs://nas/export", options: { version: 4 } }, "options.version"],
  ])("refuses the NFS config %j naming the field %s", (config, field) => {
    const error = refusal(config);
    expect(error.field).toBe(field);
    expect(error.message).toContain(`field "${field}"`);
  });

  it("does no I/O: a remote on a missing folder is built, and only open() fails", async () => {
    const remote = createRemote({ kind: "LOCAL", location: join(tmpdir(), "cairn-surely-missing-folder") });
    await expect(remote.open()).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});
