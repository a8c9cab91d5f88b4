/** How the HTTP layer answers failures: thrown errors and zod issues become the contract's error body. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "@logtape/logtape";
import type { z } from "zod";
import { HttpError, httpErrors, isTransient } from "../lib/errors.ts";

/** Maps any thrown error to the contract's error body: 503 for "not now" failures and a full store, else 500. */
export function toHttpError(error: unknown, log: Logger): HttpError {
  if (error instanceof HttpError) {
    if (error.status >= 500 && error.cause !== undefined) logCause(log, error.cause);
    return error;
  }
  logCause(log, error);
  if (isTransient(error)) {
    return httpErrors.unavailable(5, "Cannot reach the job store: try again shortly");
  }
  // Redis out of memory: the store is full, not broken; the client may try again later.
  if (error instanceof Error && /^OOM\b/.test(error.message)) {
    return httpErrors.unavailable(30, "Cannot store the request: the job store is full");
  }
  return new HttpError(500, "internal", "Cannot complete the request: internal error");
}

/** Logs a server fault with its cause chain at error level, tokens masked. */
function logCause(log: Logger, error: unknown): void {
  log.error("Cannot serve the request: {cause}", { cause: describeError(error) });
}

const JWT_LIKE = /eyJ[\w-]+\.[\w-]+\.[\w-]*/g;

/** One line naming an error and its causes (`A: x <- B: y`), with anything JWT-like masked. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    parts.push(current instanceof Error ? `${current.name}: ${current.message}` : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(" <- ").replace(JWT_LIKE, "[REDACTED]");
}

/** The error as a response built on the context, so headers set by middleware (request id) stay. */
export function respond(c: Context, http: HttpError): Response {
  return c.json(http.toBody(), http.status as ContentfulStatusCode, http.headers);
}

type Issue = z.core.$ZodIssue;

/** True for an issue that says a field is missing rather than wrong. */
function isMissing(issue: Issue): boolean {
  return issue.code === "invalid_type" && / received undefined$/.test(issue.message);
}

/** The issues of a failed union's likeliest branch: fewest issues, a missing field counting ten. */
function branchIssues(issue: Issue): Issue[] {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return [issue];
  const weight = (issues: Issue[]) => issues.reduce((n, i) => n + (isMissing(i) ? 10 : 1), 0);
  const best = issue.errors.reduce((a, b) => weight(b) < weight(a) ? b : a);
  return best.map((inner) => ({ ...inner, path: [...issue.path, ...inner.path] }));
}

/** Turns a zod error into one sentence for the client (never raw zod output). */
export function describeIssues(error: z.ZodError): string {
  const seen = new Set<string>();
  const parts = error.issues.flatMap(branchIssues).flatMap((issue) => {
    const where = issue.path.length > 0 ? issue.path.join(".") : "body";
    if (seen.has(where)) return []; // one complaint per field
    seen.add(where);
    if (isMissing(issue)) return [`${where} is required`];
    return [`${where} ${issue.message.replace(/^Invalid input: /, "")}`];
  }).slice(0, 3);
  return `Cannot accept the request: ${parts.join("; ")}`;
}

/** What a route's validation hook receives (the part this layer reads). */
export interface Validation {
  success: boolean;
  error?: z.ZodError;
}

/** The request as 422 with a readable sentence, from a failed validation. */
export function unprocessable(result: Validation): HttpError {
  const message = result.error
    ? describeIssues(result.error)
    : "Cannot accept the request: it is invalid";
  return new HttpError(422, "invalid_request", message);
}

/** The default validation hook of every router: a failed validation answers 422. */
export function rejectInvalid(result: Validation): undefined {
  if (!result.success) throw unprocessable(result);
  return undefined;
}

/**
 * A validation hook that checks the caller first, so an anonymous request still answers 401 whatever
 * its body holds, then answers `reject(result)` (422 unless told otherwise).
 */
export function rejectAfter(
  check: (c: Context) => Promise<unknown>,
  reject: (result: Validation) => HttpError = unprocessable,
) {
  return (result: Validation, c: Context): undefined | Promise<never> => {
    if (result.success) return undefined;
    return check(c).then(() => {
      throw reject(result);
    });
  };
}
