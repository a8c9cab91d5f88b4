/** `GET /v1/jobs`: the caller's jobs, newest first, a page at a time. */
import { createRoute } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { HttpError } from "../lib/errors.ts";
import type { JobRecord } from "../lib/queue/types.ts";
import { createCursorSeal } from "./cursors.ts";
import { rejectAfter } from "./errors.ts";
import { authenticate, describeJob } from "./http.ts";
import { errors, jobPage, json, SERVER_ERRORS } from "./responses.ts";
import { listQuery } from "./schemas.ts";

/** Jobs per page when `limit` is absent. */
export const DEFAULT_PAGE_SIZE = 20;

/**
 * Queued jobs of one page that get a `queue_position` (each costs the broker a few reads): the newest
 * ones; the others leave the field out, and `GET /v1/jobs/{id}` always has it.
 */
export const LISTED_POSITIONS = 10;

/** The route definition of `GET /v1/jobs`. */
export const listJobsRoute = createRoute({
  method: "get",
  path: "/v1/jobs",
  operationId: "listJobs",
  tags: ["jobs"],
  summary: "The caller's jobs, newest first",
  description:
    "Only the caller's jobs, ever, newest first, `limit` (1 to 100, default 20) per page. " +
    "Each item is the job document of `GET /v1/jobs/{id}` without `result.image` (see " +
    "`urls.image`; `queue_position` only on the page's newest 10 queued jobs). `next_cursor` continues the listing with the same `status`; a cursor that was " +
    "changed, or made for another caller or another `status`, answers 422.",
  security: [{ bearer: [] }],
  request: { query: listQuery },
  responses: {
    200: { description: "A page of jobs", content: json(jobPage) },
    ...errors({
      401: "Cannot authenticate: no valid bearer token",
      422: "Cannot list the jobs: `limit`, `status` or `cursor` is invalid",
      ...SERVER_ERRORS,
    }),
  },
});

/** A job as a listing shows it: the job document, its result without the image. */
async function listed(deps: AppDeps, job: JobRecord, position: boolean) {
  return await describeJob(deps, job, { listed: true, position });
}

/** The listing route. */
export function jobListRoutes(deps: AppDeps) {
  const seal = createCursorSeal(() => deps.broker.sharedSecret("list-cursors"));
  const rejected = rejectAfter((c) => authenticate(c, deps));
  return router().openapi(listJobsRoute, async (c) => {
    const owner = await authenticate(c, deps);
    const { limit = DEFAULT_PAGE_SIZE, status, cursor } = c.req.valid("query");
    const filter = status ?? "";
    let after: string | undefined;
    if (cursor !== undefined) {
      after = await seal.open(owner, filter, cursor) ?? undefined;
      if (after === undefined) {
        throw new HttpError(
          422,
          "invalid_request",
          "Cannot list the jobs: the cursor is not one this listing handed out",
        );
      }
    }
    const page = await deps.broker.list(owner, { limit, status, cursor: after });
    // The broker's index is per owner; checking again costs nothing and can only hide a bug.
    const jobs = page.jobs.filter((job) => job.owner === owner);
    let positions = 0;
    const data = await Promise.all(jobs.map((job) => {
      const position = job.status === "queued" && positions++ < LISTED_POSITIONS;
      return listed(deps, job, position);
    }));
    const next = page.next === null ? null : await seal.seal(owner, filter, page.next);
    return c.json({ data, next_cursor: next }, 200);
  }, (result, c) => rejected(result, c));
}
