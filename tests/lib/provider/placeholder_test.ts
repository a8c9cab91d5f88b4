/** Tests of the placeholder drawing: a valid, deterministic, non-flat PNG. */
import assert from "node:assert/strict";
import { drawPlaceholder } from "../../../lib/provider/placeholder.ts";
import { sniffImage } from "../../../lib/provider/images.ts";

interface Chunk {
  type: string;
  data: Uint8Array;
  crc: number;
  crcInput: Uint8Array;
}

/** A bit-by-bit CRC-32, independent of the table-driven one under test. */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunks(png: Uint8Array): Chunk[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const found: Chunk[] = [];
  for (let offset = 8; offset < png.length;) {
    const length = view.getUint32(offset);
    const type = new TextDecoder().decode(png.subarray(offset + 4, offset + 8));
    found.push({
      type,
      data: png.subarray(offset + 8, offset + 8 + length),
      crc: view.getUint32(offset + 8 + length),
      crcInput: png.subarray(offset + 4, offset + 8 + length),
    });
    offset += 12 + length;
  }
  return found;
}

async function inflate(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("drawPlaceholder produces a valid RGB PNG", async (t) => {
  for (const [width, height] of [[256, 256], [40, 10], [1, 1]]) {
    await t.step(`${width}x${height}`, async () => {
      const options = width === 256 ? undefined : { width, height };
      const png = await drawPlaceholder("a lighthouse at dusk", options);
      assert.equal(sniffImage(png), "image/png");
      const found = chunks(png);
      assert.deepEqual(found.map((chunk) => chunk.type), ["IHDR", "IDAT", "IEND"]);
      for (const chunk of found) assert.equal(chunk.crc, crc32(chunk.crcInput), chunk.type);
      const header = new DataView(found[0].data.buffer, found[0].data.byteOffset, 13);
      assert.equal(header.getUint32(0), width);
      assert.equal(header.getUint32(4), height);
      assert.deepEqual([...found[0].data.subarray(8)], [8, 2, 0, 0, 0]);
      const raw = await inflate(found[1].data);
      const stride = 1 + width * 3;
      assert.equal(raw.length, height * stride);
      for (let y = 0; y < height; y++) assert.equal(raw[y * stride], 0, "filter byte");
    });
  }
});

Deno.test("drawPlaceholder is deterministic per prompt and differs between prompts", async () => {
  const first = await drawPlaceholder("a red fox in the snow");
  const again = await drawPlaceholder("a red fox in the snow");
  const other = await drawPlaceholder("a blue whale at sea");
  assert.deepEqual(first, again);
  assert.notDeepEqual(first, other);
});

Deno.test("drawPlaceholder draws a picture rather than a flat fill", async () => {
  const png = await drawPlaceholder("mountains");
  const raw = await inflate(chunks(png)[1].data);
  const colours = new Set<number>();
  for (let y = 0; y < 256; y++) {
    for (let x = 0; x < 256; x++) {
      const i = y * (1 + 256 * 3) + 1 + x * 3;
      colours.add((raw[i] << 16) | (raw[i + 1] << 8) | raw[i + 2]);
    }
  }
  assert.ok(colours.size > 20, `only ${colours.size} colours`);
});

Deno.test("drawPlaceholder rejects sizes out of range", async () => {
  for (const size of [{ width: 0 }, { height: 4097 }, { width: 1.5 }]) {
    await assert.rejects(drawPlaceholder("x", size), RangeError);
  }
});
