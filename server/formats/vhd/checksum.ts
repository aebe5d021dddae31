/**
 * The VHD checksum of a footer or header: the one's complement of the 32-bit sum of every byte, with the
 * 4-byte checksum field (at `checksumOffset`) counted as zero.
 */
export function vhdChecksum(struct: Buffer, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < struct.length; i++) {
    if (i >= checksumOffset && i < checksumOffset + 4) continue;
    sum = (sum + struct[i]) >>> 0;
  }
  return ~sum >>> 0;
}
