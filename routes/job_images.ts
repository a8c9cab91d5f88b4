/** `GET /v1/jobs/{id}/images/{index}`: one image of a succeeded job, as `/image` serves the first. */
import { createRoute, z } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { rejectAfter } from "./errors.ts";
import { authenticateReader, ownedJob } from "./http.ts";
import {
  etagOf,
  imageAnswers,
  imageRequest,
  mediaType,
  notModified,
  SANDBOX,
  storeLocation,
} from "./job_image.ts";
import { errors, SERVER_ERRORS } from "./responses.ts";
import { jobId } from "./schemas.ts";

const NO_IMAGE =
  "Cannot find the image: no such job for this caller, it has not succeeded, or it has no image at this index";
const BAD_INDEX = "Cannot accept the request: index must be a whole number from 0 to 9";

/** The route definition of `GET /v1/jobs/{id}/images/{index}`. */
export const jobImagesRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/images/{index}",
  operationId: "getJobImageAt",
  tags: ["jobs"],
  summary: "One of a succeeded job's images",
  description: "The `index`-th image (from 0, as `result.images` lists them) with `Content-Type` " +
    "read from its bytes, `ETag` and `Cache-Control: private`, exactly as `GET /v1/jobs/{id}/image` " +
    "serves the first. 404 until the job has succeeded or past its last image; 422 for an index " +
    "that is not a whole number. Auth: a bearer token, or the job's `ticket` (as in the links).",
  security: [{ bearer: [] }, { ticket: [] }] as Record<string, string[]>[],
  request: {
    params: z.object({
      id: jobId,
      index: z.string().openapi({ description: "0 to 9", example: "1" }),
    }),
    ...imageRequest,
  },
  responses: {
    ...imageAnswers,
    ...errors({
      401: "Cannot authenticate: no valid bearer token or ticket",
      404: NO_IMAGE,
      422: BAD_INDEX,
      ...SERVER_ERRORS,
    }),
  },
});

/** The index of the path, or a 422 when it is not a whole number from 0 to 9 (a job has at most 10). */
function indexOf(text: string): number {
  if (!/^\d$/.test(text)) throw new HttpError(422, "invalid_request", BAD_INDEX);
  return Number(text);
}

/** The route of every image of a job. */
export function jobImagesRoutes(deps: AppDeps) {
  // A malformed id is a job nobody has: 404 like any other, once the caller is known.
  const unknownJob = rejectAfter(
    (c) => authenticateReader(c, deps, c.req.param("id") ?? ""),
    () => httpErrors.notFound(NO_IMAGE),
  );
  return router().openapi(jobImagesRoute, async (c) => {
    const { id, index: text } = c.req.valid("param");
    const owner = await authenticateReader(c, deps, id);
    const index = indexOf(text);
    const job = await ownedJob(deps, owner, id);
    if (job.status !== "succeeded" || index >= (job.imageCount ?? 1)) {
      throw httpErrors.notFound(NO_IMAGE);
    }
    const etag = etagOf(job, index);
    const headers = { ETag: etag, "Cache-Control": "private" };
    if (notModified(c.req.header("If-None-Match"), etag)) return c.body(null, 304, headers);
    const location = await storeLocation(deps, job, index);
    if (location) return c.body(null, 302, { Location: location, "Cache-Control": "no-store" });
    const base64 = await deps.broker.imageAt(id, index);
    if (base64 === null) throw httpErrors.notFound(NO_IMAGE);
    const bytes = Uint8Array.fromBase64(base64);
    const type = await mediaType(bytes, job.mimeTypes?.[index]);
    return c.body(bytes, 200, { ...headers, ...SANDBOX, "Content-Type": type });
  }, (result, c) => unknownJob(result, c));
}
