/** Reads a JSON request body before validation: 413 over the size limit, 400 when it does not parse. */
import type { MiddlewareHandler } from "hono";
import { httpErrors } from "../lib/errors.ts";

/** How a route takes its JSON body. */
export interface JsonBodyOptions {
  /** Largest body accepted (413 above it); no limit when absent. */
  maxBytes?: number;
  /** An empty body reads as `{}` instead of answering 400. */
  optional?: boolean;
  /** Anything but a JSON object answers 400 (otherwise it reaches validation, and 422). */
  objectOnly?: boolean;
  /** Called with the parsed body, its text and its size in bytes before validation; may throw. */
  check?: (value: unknown, text: string, bytes: number) => void;
}

const NOT_JSON = "Cannot parse the body: it must be a JSON object";

/**
 * A Content-Type that both @hono/zod-openapi's media type gate and hono's json validator take as
 * JSON: for it the request goes on as it came.
 */
const PLAIN_JSON = /^application\/json(;\s*[a-zA-Z0-9-]+=[^;]+)*$/i;

const decoder = new TextDecoder();

/**
 * Middleware that parses the body as JSON whatever its `Content-Type` says (as the service always
 * did), so a malformed body answers the contract's 400 rather than a framework's 400 or 415. The text
 * read goes into hono's body cache, where validation's `c.req.json()` finds it: the body is read
 * once, and the request is rebuilt (marked `application/json`) only when its Content-Type is not JSON.
 */
export function jsonBody(options: JsonBodyOptions = {}): MiddlewareHandler[] {
  const { maxBytes, optional = false, objectOnly = false, check } = options;
  const parse: MiddlewareHandler = async (c, next) => {
    const raw = c.req.raw;
    const read = await readText(raw, maxBytes);
    let text = read.text;
    let value: unknown = {};
    if (!optional || text.trim() !== "") {
      try {
        value = JSON.parse(text);
      } catch {
        throw httpErrors.invalid(NOT_JSON);
      }
    } else {
      text = "{}";
    }
    if (objectOnly && (value === null || typeof value !== "object" || Array.isArray(value))) {
      throw httpErrors.invalid(NOT_JSON);
    }
    check?.(value, text, read.bytes);
    if (!PLAIN_JSON.test(raw.headers.get("Content-Type") ?? "")) {
      // The validators read the header, and a served request's headers are immutable.
      const headers = new Headers(raw.headers);
      headers.set("Content-Type", "application/json");
      headers.delete("Content-Length");
      c.req.raw = new Request(raw.url, { method: raw.method, headers });
    }
    // hono keeps promises in its body cache (its type says the values themselves).
    c.req.bodyCache = { text: Promise.resolve(text) as unknown as string };
    await next();
  };
  return [parse];
}

/** The body as text and its size; over `maxBytes` throws 413, before reading when Content-Length says so. */
async function readText(
  raw: Request,
  maxBytes: number | undefined,
): Promise<{ text: string; bytes: number }> {
  if (maxBytes === undefined) {
    const bytes = await raw.bytes();
    return { text: decoder.decode(bytes), bytes: bytes.length };
  }
  const declared = raw.headers.get("Content-Length");
  if (declared !== null && !raw.headers.has("Transfer-Encoding")) {
    if (Number(declared) > maxBytes) throw httpErrors.tooLarge();
    // The server holds the body to its declared length; the check below also covers a caller that
    // built the Request by hand.
    const bytes = await raw.bytes();
    if (bytes.length > maxBytes) throw httpErrors.tooLarge();
    return { text: decoder.decode(bytes), bytes: bytes.length };
  }
  const bytes = await readCapped(raw.body, maxBytes);
  return { text: decoder.decode(bytes), bytes: bytes.length };
}

/** Reads a stream of unknown length, throwing 413 (and cancelling it) as soon as it passes `maxBytes`. */
async function readCapped(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        throw httpErrors.tooLarge();
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}
