/** Redis Cluster's key-to-slot mapping (CRC16/XMODEM of the key or of its `{hash tag}`, modulo 16384). */

/** How many hash slots a Redis Cluster has. */
export const SLOT_COUNT = 16_384;

const encoder = new TextEncoder();
const TABLE = new Uint16Array(256);
for (let byte = 0; byte < 256; byte++) {
  let crc = byte << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
  TABLE[byte] = crc & 0xffff;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ byte) & 0xff];
  return crc;
}

/** The part of a key that Redis hashes: the first non-empty `{…}` tag, or else the whole key. */
export function hashedPart(key: string | Uint8Array): Uint8Array {
  const bytes = typeof key === "string" ? encoder.encode(key) : key;
  const open = bytes.indexOf(0x7b); // {
  if (open < 0) return bytes;
  const close = bytes.indexOf(0x7d, open + 1); // }
  if (close < 0 || close === open + 1) return bytes;
  return bytes.subarray(open + 1, close);
}

/** The cluster slot (0…16383) that serves `key`, as `CLUSTER KEYSLOT` computes it. */
export function keySlot(key: string | Uint8Array): number {
  return crc16(hashedPart(key)) % SLOT_COUNT;
}
