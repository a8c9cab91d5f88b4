/** `--image`: a reference image as the service takes it, a file read and sent as a `data:` URL. */
import { sniffImage } from "../provider/images.ts";
import { CliError, EXIT } from "./errors.ts";

/** How a `--image` value that names a file is read (tests pass their own). */
export type ReadFile = (path: string) => Promise<Uint8Array>;

/** The largest file sent: the service takes at most 10 MiB per image. */
const MAX_FILE_BYTES = 10 * 1024 * 1024;

/**
 * The reference as POST /v1/images takes it: `https://…`, `data:…` and `job:…` as given, anything
 * else a file path, read (relative to `cwd`) and sent as a data URL of its sniffed media type.
 */
export async function referenceOf(value: string, readFile: ReadFile): Promise<string> {
  if (/^(https:\/\/|data:|job:)/.test(value)) return value;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(value);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CliError(EXIT.usage, `Cannot read the image ${value}: ${reason}`, { cause: error });
  }
  const mime = sniffImage(bytes);
  if (mime === null) {
    throw new CliError(EXIT.usage, `Cannot send the image ${value}: it is not a JPEG, PNG or WebP`);
  }
  if (bytes.length > MAX_FILE_BYTES) {
    throw new CliError(EXIT.usage, `Cannot send the image ${value}: it is over 10 MiB`);
  }
  return `data:${mime};base64,${bytes.toBase64()}`;
}

/** The file of the `k`-th of several images: `<id>-<k>.<ext>`, or `--out` with `-<k>` before its extension. */
export function nthFile(out: string | undefined, id: string, k: number, ext: string): string {
  if (out === undefined) return `${id}-${k}.${ext}`;
  const dot = out.lastIndexOf(".");
  const slash = Math.max(out.lastIndexOf("/"), out.lastIndexOf("\\"));
  return dot > slash + 1 ? `${out.slice(0, dot)}-${k}${out.slice(dot)}` : `${out}-${k}.${ext}`;
}
