/**
 * A backed-up disk as the file-system readers want it: a read-only random-access view of the virtual disk (a VHD chain
 * read in place, no copy), a `file-disk` Disk for ext2fs, and a byte window for one partition.
 */
import { Disk, type ReadResult, type WriteResult } from "file-disk";

/** What the readers need of a disk: its size and reads at any offset (zeros past the end are refused by the source). */
export interface DiskReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

/** A window [offset, offset + size) of a disk: one partition. */
export function windowOf(disk: DiskReader, offset: number, size: number): DiskReader {
  return {
    size,
    read: (at, length) => {
      if (at < 0 || at + length > size)
        return Promise.reject(new Error(`read of ${length} bytes at ${at} is outside the partition (${size} bytes)`));
      return disk.read(offset + at, length);
    },
  };
}

/**
 * file-disk's Disk over a DiskReader, read-only with writes recorded in memory (ext2fs may write while mounting, e.g. the
 * journal replay state: those writes never reach the backup).
 */
export class ReaderDisk extends Disk {
  constructor(private readonly reader: DiskReader) {
    super(true, true, false, false);
  }

  protected async _getCapacity(): Promise<number> {
    return this.reader.size;
  }

  protected async _read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<ReadResult> {
    const readable = Math.max(0, Math.min(length, this.reader.size - fileOffset));
    if (readable > 0) (await this.reader.read(fileOffset, readable)).copy(buffer, bufferOffset);
    if (readable < length) buffer.fill(0, bufferOffset + readable, bufferOffset + length);
    return { bytesRead: length, buffer };
  }

  protected async _write(_buffer: Buffer, _bufferOffset: number, _length: number, _fileOffset: number): Promise<WriteResult> {
    throw new Error("a backed-up disk is read-only");
  }

  protected async _flush(): Promise<void> {}
}
