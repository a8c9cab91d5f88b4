/** A built-in image generator: a small landscape drawn deterministically from the prompt, as PNG. */

/** Options of drawPlaceholder. */
export interface PlaceholderOptions {
  /** Width in pixels, 1 to 4096 (default 256). */
  width?: number;
  /** Height in pixels, 1 to 4096 (default 256). */
  height?: number;
}

type Rgb = [number, number, number];

const PNG_SIGNATURE = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const MAX_SIDE = 4096;
let crcTable: Uint32Array | undefined;

/** Draws a deterministic landscape (sky gradient, sun, hills) for a prompt and encodes it as RGB PNG. */
export async function drawPlaceholder(
  prompt: string,
  options: PlaceholderOptions = {},
): Promise<Uint8Array> {
  const { width = 256, height = 256 } = options;
  for (const [name, value] of [["width", width], ["height", height]] as const) {
    if (!Number.isInteger(value) || value < 1 || value > MAX_SIDE) {
      throw new RangeError(`${name} must be an integer from 1 to ${MAX_SIDE}`);
    }
  }
  const raw = paint(prompt, width, height);
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit depth, truecolour RGB, deflate, adaptive filter, no interlace
  return concat([
    PNG_SIGNATURE,
    chunk("IHDR", header),
    chunk("IDAT", await deflate(raw)),
    chunk("IEND", new Uint8Array(0)),
  ]);
}

/** Paints the scene into PNG scanlines (filter byte 0 then RGB triples per row). */
function paint(prompt: string, width: number, height: number): Uint8Array {
  const random = mulberry32(fnv1a(prompt));
  const hue = random() * 360;
  const skyTop = hsl(hue, 0.55, 0.22);
  const skyHorizon = hsl(hue + 35, 0.75, 0.72);
  const sunColor = hsl(hue + 160 + random() * 60, 0.9, 0.68);
  const side = Math.min(width, height);
  const sunX = width * (0.2 + random() * 0.6);
  const sunY = height * (0.18 + random() * 0.22);
  const sunR = side * (0.08 + random() * 0.07);
  const hills = [0, 1, 2].map((layer) => ({
    color: mix(hsl(hue + 190 + layer * 18, 0.45, 0.4 - layer * 0.1), skyHorizon, 0.4 - layer * 0.2),
    ridge: Float32Array.from({ length: width }, () => 0),
    base: height * (0.55 + layer * 0.13),
    amplitude: height * (0.04 + random() * 0.06),
    frequency: (0.7 + random() * 1.6) * Math.PI * 2 / width,
    phase: random() * Math.PI * 2,
  }));
  for (const hill of hills) {
    for (let x = 0; x < width; x++) {
      const wave = Math.sin(x * hill.frequency + hill.phase) +
        0.35 * Math.sin(x * hill.frequency * 2.7 + hill.phase * 1.3);
      hill.ridge[x] = hill.base - hill.amplitude * wave;
    }
  }
  const stride = 1 + width * 3;
  const raw = new Uint8Array(height * stride);
  const pixel: Rgb = [0, 0, 0];
  for (let y = 0; y < height; y++) {
    const t = height === 1 ? 0 : y / (height - 1);
    let offset = y * stride + 1;
    for (let x = 0; x < width; x++, offset += 3) {
      mix(skyTop, skyHorizon, Math.min(1, t * 1.4), pixel);
      const distance = Math.hypot(x - sunX, y - sunY) / sunR;
      if (distance < 1) mix(pixel, sunColor, 1, pixel);
      else if (distance < 2.2) mix(pixel, sunColor, ((2.2 - distance) / 1.2) ** 2 * 0.45, pixel);
      for (let layer = hills.length - 1; layer >= 0; layer--) {
        if (y >= hills[layer].ridge[x]) {
          pixel[0] = hills[layer].color[0];
          pixel[1] = hills[layer].color[1];
          pixel[2] = hills[layer].color[2];
          break;
        }
      }
      raw[offset] = pixel[0];
      raw[offset + 1] = pixel[1];
      raw[offset + 2] = pixel[2];
    }
  }
  return raw;
}

function mix(from: Rgb, to: Rgb, amount: number, out: Rgb = [0, 0, 0]): Rgb {
  for (let i = 0; i < 3; i++) out[i] = Math.round(from[i] + (to[i] - from[i]) * amount);
  return out;
}

function hsl(hue: number, saturation: number, lightness: number): Rgb {
  const h = ((hue % 360) + 360) % 360 / 60;
  const chroma = (1 - Math.abs(2 * lightness - 1)) * saturation;
  const second = chroma * (1 - Math.abs(h % 2 - 1));
  const m = lightness - chroma / 2;
  const [r, g, b] = h < 1
    ? [chroma, second, 0]
    : h < 2
    ? [second, chroma, 0]
    : h < 3
    ? [0, chroma, second]
    : h < 4
    ? [0, second, chroma]
    : h < 5
    ? [second, 0, chroma]
    : [chroma, 0, second];
  return [Math.round((r + m) * 255), Math.round((g + m) * 255), Math.round((b + m) * 255)];
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  }
  return hash;
}

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function deflate(raw: Uint8Array): Promise<Uint8Array> {
  // "deflate" is the zlib format (RFC 1950), exactly what PNG's IDAT expects.
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function crc32(bytes: Uint8Array): number {
  crcTable ??= Uint32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let crc = 0xffffffff;
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
