/** Reads a JSON request body before validation: 413 over the size limit, 400 when it does not parse. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { httpErrors } from "../lib/errors.ts";

/** How a route takes its JSON body. */
export interface JsonBodyOptions {
  /** Largest body accepted (413 above it); no limit when absent. */
  maxBytes?: number;
  /** An empty body reads as `{}` instead of answering 400. */
  optional?: boolean;
  /** Anything but a JSON object answers 400 (otherwise it reaches validation, and 422). */
  objectOnly?: boolean;
}

const NOT_JSON = "Cannot parse the body: it must be a JSON object";

/**
 * Middleware that parses the body as JSON whatever its `Content-Type` says (as the service always
 * did), then hands validation a request marked `application/json` with the same bytes, so a malformed
 * body answers the contract's 400 rather than a framework's 400 or 415.
 */
export function jsonBody(options: JsonBodyOptions = {}): MiddlewareHandler[] {
  const parse: MiddlewareHandler = async (c, next) => {
    const text = await c.req.text();
    let value: unknown = {};
    if (!options.optional || text.trim() !== "") {
      try {
        value = JSON.parse(text);
      } catch {
        throw httpErrors.invalid(NOT_JSON);
      }
    }
    if (
      options.objectOnly && (value === null || typeof value !== "object" || Array.isArray(value))
    ) {
      throw httpErrors.invalid(NOT_JSON);
    }
    const raw = c.req.raw;
    const headers = new Headers(raw.headers);
    headers.set("Content-Type", "application/json");
    headers.delete("Content-Length");
    c.req.raw = new Request(raw.url, {
      method: raw.method,
      headers,
      body: JSON.stringify(value),
      signal: raw.signal,
    });
    c.req.bodyCache = {};
    await next();
  };
  if (options.maxBytes === undefined) return [parse];
  const limit = bodyLimit({
    maxSize: options.maxBytes,
    onError: () => {
      throw httpErrors.tooLarge();
    },
  });
  return [limit, parse];
}
