import xxhash from "xxhash-wasm";

let api: ReturnType<typeof xxhash> | undefined;

/** XXH64 (seed 0) of `data` as 16 uppercase hex digits: the content of an XVA `.xxhash` entry. */
export async function xxh64Hex(data: Uint8Array): Promise<string> {
  api ??= xxhash();
  const { h64Raw } = await api;
  return h64Raw(data, 0n).toString(16).toUpperCase().padStart(16, "0");
}
