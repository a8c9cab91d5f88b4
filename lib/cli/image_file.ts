/** Getting a finished job's image and naming its file. */
import type { ApiClient, ImageBytes } from "./api.ts";
import { CliError, EXIT } from "./errors.ts";

const EXTENSIONS: Record<string, string> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/webp": "webp",
  "image/gif": "gif",
};

/** The file extension of an image media type (`bin` for one the CLI does not know). */
export function extensionOf(mimeType: string): string {
  return EXTENSIONS[mimeType.toLowerCase()] ?? "bin";
}

/** The bytes of a base64 `data:` URL, or null when `url` is not one. */
export function decodeDataUrl(url: string): ImageBytes | null {
  const match = /^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$/s.exec(url);
  if (!match) return null;
  try {
    return { mimeType: match[1].trim(), bytes: Uint8Array.fromBase64(match[2].trim()) };
  } catch {
    return null;
  }
}

/**
 * The image of a succeeded job: `GET /v1/jobs/:id/image` first, else the data URL the ending carried,
 * else the one in the job's document.
 */
export async function fetchImage(
  client: ApiClient,
  id: string,
  { dataUrl, signal }: { dataUrl?: string; signal?: AbortSignal } = {},
): Promise<ImageBytes> {
  const direct = await client.image(id, signal);
  if (direct) return direct;
  const url = dataUrl ?? (await client.job(id, signal)).result?.image;
  const image = url === undefined ? null : decodeDataUrl(url);
  if (!image) {
    throw new CliError(
      EXIT.unreachable,
      `Cannot get the image: the service sent none for job ${id}`,
    );
  }
  return image;
}
