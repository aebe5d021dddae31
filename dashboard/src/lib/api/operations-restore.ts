/**
 * The operations of file-level restore (a delta restore point's files: browse, then download), one constant per
 * operation, named after it; validated against `schema.graphql` by `scripts/validate-operations.ts`.
 */
import { graphql, type ResultOf, type VariablesOf } from "./graphql.js";

/**
 * Lists a folder of a disk of a VHD_CHAIN restore point. `disk` is an index into `RestorePoint.disks`; `partition`
 * null is the first readable partition (or the whole disk without a partition table), 0 the whole disk, 1 the first.
 * BAD_USER_INPUT for an XVA point (its message explains that a delta backup is needed), a bad disk or partition (the
 * message lists the partitions and why each cannot be read); NOT_FOUND for a missing path.
 */
export const BrowseRestorePointQuery = graphql(`
  query BrowseRestorePoint($id: ID!, $disk: Int!, $partition: Int, $path: String!) {
    browseRestorePoint(id: $id, disk: $disk, partition: $partition, path: $path) {
      name
      path
      type
      size
      modifiedAt
    }
  }
`);

export type FileEntryRecord = ResultOf<typeof BrowseRestorePointQuery>["browseRestorePoint"][number];

/** Prepares an archive of files and folders; `url` is `/download/<token>` on this server, single use, valid 5 minutes. */
export const RestoreFilesMutation = graphql(`
  mutation RestoreFiles($input: FileRestoreInput!) {
    restoreFiles(input: $input) {
      url
      expiresAt
    }
  }
`);

export type ArchiveFormat = NonNullable<VariablesOf<typeof RestoreFilesMutation>["input"]["format"]>;
