/** Wrong methods on a known path: 405 with `Allow` and the contract's error body, not 404. */
import type { Hono } from "hono";
import type { AppEnv } from "./deps.ts";
import { HttpError } from "../lib/errors.ts";

/**
 * Adds, for every path routed on `app` so far, a catch-all that answers 405 listing the methods the
 * path serves (HEAD wherever GET is). Call it once every route is registered: the catch-all comes
 * after them, so it only answers what nothing else does.
 */
export function answerWrongMethods(app: Hono<AppEnv>): void {
  const allowed = new Map<string, Set<string>>();
  for (const { method, path } of app.routes) {
    if (method === "ALL") continue; // middleware
    const methods = allowed.get(path) ?? new Set<string>();
    methods.add(method);
    if (method === "GET") methods.add("HEAD");
    allowed.set(path, methods);
  }
  for (const [path, methods] of allowed) {
    const allow = [...methods].sort().join(", ");
    app.all(path, (c) => {
      throw new HttpError(
        405,
        "invalid_request",
        `Cannot ${c.req.method.slice(0, 16)} this path: it allows ${allow}`,
        { headers: { Allow: allow } },
      );
    });
  }
}
