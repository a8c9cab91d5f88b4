/** `GET /v1/jobs/{id}` and `DELETE /v1/jobs/{id}`: read and cancel a job. */
import { createRoute } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { httpErrors } from "../lib/errors.ts";
import { rejectAfter } from "./errors.ts";
import { authenticate, describeJob, ownedJob } from "./http.ts";
import { cancelAnswer, errors, jobSchema, json, SERVER_ERRORS } from "./responses.ts";
import { jobParams } from "./schemas.ts";

const NOT_FOUND =
  "Cannot find the job: no such job for this caller (another owner's job looks the same)";

/** The route definition of `GET /v1/jobs/{id}`. */
export const getJobRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}",
  operationId: "getJob",
  tags: ["jobs"],
  summary: "A job's status and result",
  description: "`result` (the image, inline) only when succeeded; `error` only when failed. " +
    "`urls` as in the submit answer, with fresh tickets, plus `image` once succeeded; " +
    "`queue_position` while queued (an estimate, see `Job`).",
  security: [{ bearer: [] }],
  request: { params: jobParams },
  responses: {
    200: { description: "The job", content: json(jobSchema) },
    ...errors({
      401: "Cannot authenticate: no valid bearer token",
      404: NOT_FOUND,
      ...SERVER_ERRORS,
    }),
  },
});

/** The route definition of `DELETE /v1/jobs/{id}`. */
export const cancelJobRoute = createRoute({
  method: "delete",
  path: "/v1/jobs/{id}",
  operationId: "cancelJob",
  tags: ["jobs"],
  summary: "Cancel a job",
  description: "A queued or running job is canceled (a running one stops at its next step and " +
    "never reports success); one that already ended answers 409.",
  security: [{ bearer: [] }],
  request: { params: jobParams },
  responses: {
    202: { description: "Canceled", content: json(cancelAnswer) },
    ...errors({
      401: "Cannot authenticate: no valid bearer token",
      404: NOT_FOUND,
      409: "Cannot cancel the job: it has already ended",
      ...SERVER_ERRORS,
    }),
  },
});

/** Routes over one job. */
export function jobRoutes(deps: AppDeps) {
  // A malformed id is a job nobody has: 404 like any other, once the caller is known. (The hooks are
  // passed as arrows so that the path's type comes from the route, not from the hook's Context.)
  const unknownJob = rejectAfter((c) => authenticate(c, deps), () => httpErrors.notFound());
  return router()
    .openapi(getJobRoute, async (c) => {
      const owner = await authenticate(c, deps);
      const job = await ownedJob(deps, owner, c.req.valid("param").id, { image: true });
      return c.json(await describeJob(deps, job), 200);
    }, (result, c) => unknownJob(result, c))
    .openapi(cancelJobRoute, async (c) => {
      const owner = await authenticate(c, deps);
      const job = await ownedJob(deps, owner, c.req.valid("param").id);
      const result = await deps.broker.cancel(job.id);
      if (result === "missing") throw httpErrors.notFound();
      if (result === "ended") {
        throw httpErrors.conflict("Cannot cancel the job: it has already ended");
      }
      deps.onCanceled?.(job.id);
      return c.json({ id: job.id, status: "canceled" as const }, 202);
    }, (result, c) => unknownJob(result, c));
}
