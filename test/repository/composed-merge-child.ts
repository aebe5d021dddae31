/**
 * Run by composed-merge.test.ts, which kills it (SIGKILL) mid-upload: one merge by composition of
 * `<folder>/d0.vhd` into `<folder>/d1.vhd` on the S3 endpoint given, with the two block checksum files.
 * Usage: composed-merge-child.ts <endpoint> <bucket> <prefix> <folder>
 */
import { S3Remote } from "../../server/remotes/s3-remote.js";
import { mergeByComposition } from "../../server/repository/composed-merge.js";

const [endpoint, bucket, prefix, folder] = process.argv.slice(2);
if (folder === undefined) throw new Error("usage: composed-merge-child.ts <endpoint> <bucket> <prefix> <folder>");
const remote = new S3Remote({ endpoint, bucket, prefix, accessKeyId: "S3RVER", secretAccessKey: "S3RVER" });
await mergeByComposition(remote, {
  parent: `${folder}/d0.vhd`,
  child: `${folder}/d1.vhd`,
  parentChecksums: `${folder}/d0.vhd.blocksums`,
  childChecksums: `${folder}/d1.vhd.blocksums`,
});
await remote.close();
