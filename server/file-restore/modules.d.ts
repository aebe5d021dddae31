/** Types for the two file-system readers Cairn uses (neither ships types): the members Cairn calls. */
declare module "ext2fs" {
  import type { Disk } from "file-disk";

  export interface Ext2Stats {
    size: number;
    mode: number;
    mtime: Date;
    mtimeMs?: number;
    isFile(): boolean;
    isDirectory(): boolean;
    isSymbolicLink(): boolean;
  }

  export interface Ext2FileHandle {
    read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
    close(): Promise<void>;
  }

  export interface Ext2Fs {
    promises: {
      readdir(path: string): Promise<string[]>;
      lstat(path: string): Promise<Ext2Stats>;
      stat(path: string): Promise<Ext2Stats>;
      readlink(path: string): Promise<string>;
      open(path: string, flags: string): Promise<Ext2FileHandle>;
    };
  }

  export function mount(disk: Disk, offset?: number): Promise<Ext2Fs>;
  export function umount(fs: Ext2Fs): Promise<void>;
}

declare module "fatfs" {
  export interface FatVolume {
    sectorSize: number;
    numSectors: number;
    readSectors(index: number, dest: Buffer, callback: (error: Error | null) => void): void;
  }

  export interface FatStats {
    size: number;
    mtime: Date;
    isFile(): boolean;
    isDirectory(): boolean;
  }

  type Callback<T> = (error: (Error & { code?: string }) | null, value: T) => void;

  export interface FatFs {
    on(event: "ready", listener: () => void): void;
    on(event: "error", listener: (error: Error) => void): void;
    readdir(path: string, callback: Callback<string[]>): void;
    stat(path: string, callback: Callback<FatStats>): void;
    fstat(fd: number, callback: Callback<FatStats>): void;
    open(path: string, flags: string, callback: Callback<number>): void;
    read(
      fd: number,
      buffer: Buffer,
      offset: number,
      length: number,
      position: number,
      callback: (error: Error | null, bytesRead: number) => void,
    ): void;
    close(fd: number, callback: (error: Error | null) => void): void;
  }

  export function createFileSystem(volume: FatVolume, options?: { ro?: boolean; noatime?: boolean }): FatFs;
}
