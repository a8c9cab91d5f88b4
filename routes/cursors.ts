/**
 * The page cursors of `GET /v1/jobs`: the broker's own position, sealed with an HMAC over the owner and
 * the listing's filter, so that a cursor that was changed, or made for another owner or another
 * filter, is refused instead of followed.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** Seals and opens page cursors. */
export interface CursorSeal {
  /** The cursor handed to `owner` for the broker position `next` of a listing with `filter`. */
  seal(owner: string, filter: string, next: string): Promise<string>;
  /** The broker position inside `cursor`; null when it is not one this service sealed for them. */
  open(owner: string, filter: string, cursor: string): Promise<string | null>;
}

const LABEL = "image-jobs/list-cursor/v1";
const MAC_BYTES = 16;
const B64URL = { alphabet: "base64url", omitPadding: true } as const;

/** The bytes of canonical unpadded base64url text (any other spelling of them is refused). */
function fromBase64Url(text: string): Uint8Array {
  const bytes = Uint8Array.fromBase64(text, { alphabet: "base64url" });
  if (bytes.toBase64(B64URL) !== text) throw new RangeError("Cannot decode: not canonical");
  return bytes;
}
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A cursor seal keyed by `secret()`, read on first use (and again after a failed read). */
export function createCursorSeal(secret: () => Promise<string>): CursorSeal {
  let key: Promise<string> | null = null;
  const keyed = () =>
    key ??= secret().catch((error) => {
      key = null;
      throw error;
    });
  const mac = (secretKey: string, owner: string, filter: string, next: string) =>
    createHmac("sha256", secretKey).update(`${LABEL}\0${owner}\0${filter}\0${next}`).digest()
      .subarray(0, MAC_BYTES);
  return {
    async seal(owner, filter, next) {
      const tag = mac(await keyed(), owner, filter, next);
      return `${encoder.encode(next).toBase64(B64URL)}.${tag.toBase64(B64URL)}`;
    },
    async open(owner, filter, cursor) {
      const match = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(cursor);
      if (!match) return null;
      let next: string;
      let tag: Uint8Array;
      try {
        next = decoder.decode(fromBase64Url(match[1]));
        tag = fromBase64Url(match[2]);
      } catch {
        return null;
      }
      if (tag.length !== MAC_BYTES) return null;
      const expected = mac(await keyed(), owner, filter, next);
      return timingSafeEqual(expected, tag) ? next : null;
    },
  };
}
