/**
 * Reference images of an edit as a submit names them: a `data:` URL (JPEG, PNG or WebP by its magic
 * numbers, at most 10 MiB decoded), an `https://` URL handed to xAI as it is (the service never
 * fetches it), or `job:<id>` / `job:<id>#<index>`, an image of one of the caller's succeeded jobs.
 */
import { JOB_ID } from "../queue/types.ts";
import { decodeBase64, sniffImage } from "./images.ts";

/** At most this many reference images per job (xAI's limit). */
export const MAX_REFERENCES = 3;

/** The largest reference image a `data:` URL may carry, decoded: 10 MiB. */
export const MAX_REFERENCE_BYTES = 10 * 1024 * 1024;

/** The longest `data:` URL that can hold MAX_REFERENCE_BYTES (base64, and a media type). */
export const MAX_DATA_URL_CHARS = Math.ceil(MAX_REFERENCE_BYTES / 3) * 4 + 128;

/** A reference image, checked: a data URL (normalised), a URL for xAI, or another job's image. */
export type Reference =
  | { kind: "data"; url: string; bytes: number }
  | { kind: "url"; url: string }
  | { kind: "job"; id: string; index: number };

const DATA_URL = /^data:([A-Za-z0-9.+-]+\/[A-Za-z0-9.+-]+)?((?:;[^;,]*)*);base64,/;
const JOB_REFERENCE = /^job:([^#]+)(?:#(\d{1,3}))?$/;

/** Checks one reference; a string says what is wrong with it (for a 422). */
export function parseReference(text: string): Reference | string {
  if (text.startsWith("data:")) return parseDataUrl(text);
  if (text.startsWith("job:")) {
    const match = JOB_REFERENCE.exec(text);
    if (!match || !JOB_ID.test(match[1])) return "must be job:<id> or job:<id>#<index>";
    const index = Number(match[2] ?? 0);
    if (index > 9) return "names an image index over 9";
    return { kind: "job", id: match[1], index };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "must be a data: URL, an https:// URL or job:<id>";
  }
  if (url.protocol !== "https:") return "must be a data: URL, an https:// URL or job:<id>";
  if (url.username || url.password) return "must not carry credentials";
  if (text.length > 2048) return "must be at most 2048 characters";
  return { kind: "url", url: text };
}

/** A `data:` URL whose bytes are a JPEG, PNG or WebP of at most 10 MiB, with its sniffed type. */
function parseDataUrl(text: string): Reference | string {
  const match = DATA_URL.exec(text);
  if (!match) return "must be a base64 data: URL";
  const payload = text.slice(match[0].length);
  if (payload.length > MAX_DATA_URL_CHARS) return "is over 10 MiB";
  const decoded = decodeBase64(payload);
  if (decoded === null) return "is not valid base64";
  if (decoded.bytes.length > MAX_REFERENCE_BYTES) return "is over 10 MiB";
  const mime = sniffImage(decoded.bytes);
  if (mime === null) return "is not a JPEG, PNG or WebP image";
  return {
    kind: "data",
    url: `data:${mime};base64,${decoded.base64}`,
    bytes: decoded.bytes.length,
  };
}

/** The form a job reference is stored in: `job:<id>#<index>`. */
export function jobReference(id: string, index: number): string {
  return `job:${id}#${index}`;
}
