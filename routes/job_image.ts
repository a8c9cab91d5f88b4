/** `GET /v1/jobs/{id}/image`: a succeeded job's image bytes, cacheable by the caller. */
import { createHash } from "node:crypto";
import { createRoute, z } from "@hono/zod-openapi";
import { fileTypeFromBuffer } from "file-type";
import { type AppDeps, router } from "./deps.ts";
import { httpErrors } from "../lib/errors.ts";
import { sniffImage } from "../lib/provider/images.ts";
import type { JobRecord } from "../lib/queue/types.ts";
import { rejectAfter } from "./errors.ts";
import { authenticateReader, ownedJob } from "./http.ts";
import { errors, SERVER_ERRORS } from "./responses.ts";
import { jobParams } from "./schemas.ts";

const NO_IMAGE = "Cannot find the image: no such job for this caller, or it has not succeeded";

/** The cache headers of an image answer, as the document shows them. */
export const cacheHeaders = {
  ETag: {
    description: "A strong validator of the image (send it back as `If-None-Match`)",
    schema: { type: "string" as const, example: '"q2uZP1vC0m4mWnF3r1xK7w"' },
  },
  "Cache-Control": {
    description: "`private`: only the caller's own cache may keep it",
    schema: { type: "string" as const, example: "private" },
  },
};

/** What both image routes take besides the path: the job's ticket, and the ETags the caller has. */
export const imageRequest = {
  query: z.object({
    ticket: z.string().optional().openapi({ description: "The job's read-only ticket" }),
  }),
  headers: z.object({
    "If-None-Match": z.string().optional().openapi({ description: "ETags the caller has" }),
  }),
};

/** How both image routes answer when there is an image: its bytes, or 304 for a current copy. */
export const imageAnswers = {
  200: {
    description: "The image",
    headers: cacheHeaders,
    content: {
      "image/*": { schema: z.string().openapi({ format: "binary" }) },
      "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) },
    },
  },
  302: {
    description:
      "With an image store and `IMAGE_STORE_REDIRECT=1`: the image at a presigned URL of " +
      "the store, valid for at most 15 minutes",
    headers: {
      Location: { description: "The presigned URL", schema: { type: "string" as const } },
    },
  },
  304: { description: "The caller's copy (`If-None-Match`) is current", headers: cacheHeaders },
} as const;

/** Where the image is, presigned, when the store's readers are sent there; null to serve the bytes. */
export async function storeLocation(
  deps: AppDeps,
  job: JobRecord,
  index: number,
): Promise<string | null> {
  return deps.images ? await deps.images.url(job, index) : null;
}

/** The route definition of `GET /v1/jobs/{id}/image`. */
export const jobImageRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/image",
  operationId: "getJobImage",
  tags: ["jobs"],
  summary: "A succeeded job's image",
  description: "The image's bytes, `Content-Type` read from them (magic numbers). 404 until the " +
    "job has succeeded. Auth: a bearer token, or the job's `ticket` (as in `urls.image`).",
  // Typed as the document's type: a literal array of two different objects defeats the handler's typing.
  security: [{ bearer: [] }, { ticket: [] }] as Record<string, string[]>[],
  request: {
    params: jobParams,
    ...imageRequest,
  },
  responses: {
    ...imageAnswers,
    ...errors({
      401: "Cannot authenticate: no valid bearer token or ticket",
      404: NO_IMAGE,
      ...SERVER_ERRORS,
    }),
  },
});

/** A strong ETag: the images of a finished job never change, so its identity and the index name one. */
export function etagOf(job: JobRecord, index = 0): string {
  const identity = `${job.id}\0${job.createdAt}\0${job.updatedAt}\0${job.attempts}`;
  const hash = createHash("sha256")
    .update(index === 0 ? identity : `${identity}\0${index}`)
    .digest("base64url");
  return `"${hash.slice(0, 22)}"`;
}

/** True when `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for this header). */
export function notModified(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(",").some((tag) => {
    const value = tag.trim();
    return value === "*" || value.replace(/^W\//, "") === etag;
  });
}

/** The media type of the bytes, from their magic numbers; the stored one when nothing matches. */
export async function mediaType(bytes: Uint8Array, stored: string | undefined): Promise<string> {
  const sniffed = sniffImage(bytes) ?? (await fileTypeFromBuffer(bytes))?.mime;
  return sniffed ?? stored ?? "application/octet-stream";
}

/**
 * Opened directly, the bytes run nothing whatever they turn out to be (defense in depth: only sniffed
 * images are ever stored).
 */
export const SANDBOX = { "Content-Security-Policy": "default-src 'none'; sandbox" };

/** The image route. */
export function jobImageRoutes(deps: AppDeps) {
  // A malformed id is a job nobody has: 404 like any other, once the caller is known.
  const unknownJob = rejectAfter(
    (c) => authenticateReader(c, deps, c.req.param("id") ?? ""),
    () => httpErrors.notFound(NO_IMAGE),
  );
  return router().openapi(jobImageRoute, async (c) => {
    const id = c.req.valid("param").id;
    const owner = await authenticateReader(c, deps, id);
    const job = await ownedJob(deps, owner, id);
    if (job.status !== "succeeded") throw httpErrors.notFound(NO_IMAGE);
    const etag = etagOf(job);
    const headers = { ETag: etag, "Cache-Control": "private" };
    if (notModified(c.req.header("If-None-Match"), etag)) return c.body(null, 304, headers);
    const location = await storeLocation(deps, job, 0);
    if (location) return c.body(null, 302, { Location: location, "Cache-Control": "no-store" });
    const base64 = await deps.broker.image(id);
    if (base64 === null) throw httpErrors.notFound(NO_IMAGE);
    const bytes = Uint8Array.fromBase64(base64);
    const type = await mediaType(bytes, job.mimeType);
    return c.body(bytes, 200, { ...headers, ...SANDBOX, "Content-Type": type });
  }, (result, c) => unknownJob(result, c));
}
