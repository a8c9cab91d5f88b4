/** `POST /v1/images`: submit an image job. */
import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type AppDeps, router } from "./deps.ts";
import { httpErrors } from "../lib/errors.ts";
import { jsonBody } from "./body.ts";
import { rejectAfter } from "./errors.ts";
import { authenticate, jobUrls, newJobId } from "./http.ts";
import { errors, json, SERVER_ERRORS, submitAnswer } from "./responses.ts";
import { submitBody, submitHeaders } from "./schemas.ts";

/** Maximum JSON body size. */
export const MAX_BODY_BYTES = 64 * 1024;

const location = {
  Location: {
    description: "The job's status URL",
    schema: { type: "string" as const, example: "/v1/jobs/fox-1" },
  },
};

/** Where a fuzzer or a client goes next with the job it just submitted. */
const jobLinks = {
  getJob: {
    operationId: "getJob",
    parameters: { id: "$response.body#/id" },
    description: "The job's status and result",
  },
  cancelJob: {
    operationId: "cancelJob",
    parameters: { id: "$response.body#/id" },
    description: "Cancel the job",
  },
  streamJobEvents: {
    operationId: "streamJobEvents",
    parameters: { id: "$response.body#/id" },
    description: "The job's notifications as Server-Sent Events",
  },
};

/** The route definition of `POST /v1/images`. */
export const submitRoute = createRoute({
  method: "post",
  path: "/v1/images",
  operationId: "submitJob",
  tags: ["jobs"],
  summary: "Submit an image job",
  description:
    "Queues a job for the image model. The same `id` (or `Idempotency-Key`) from the same " +
    "owner answers 200 with the existing job and starts no new work; from another owner, 409. " +
    "The seed's body `{Token, Prompt, Id}` is accepted too: `Token` authenticates when there is no " +
    "`Authorization` header. The body is read as JSON whatever its `Content-Type`.",
  security: [{ bearer: [] }],
  middleware: jsonBody({ maxBytes: MAX_BODY_BYTES, objectOnly: true }),
  request: {
    headers: submitHeaders,
    body: { required: true, content: json(submitBody) },
  },
  responses: {
    202: {
      description: "Queued; `Location` names the job",
      headers: location,
      links: jobLinks,
      content: json(submitAnswer),
    },
    200: {
      description: "The job that already had this id (same owner), in its current status",
      headers: location,
      links: jobLinks,
      content: json(submitAnswer),
    },
    ...errors({
      400: "Cannot parse the body: it is not a JSON object",
      401: "Cannot authenticate: no valid bearer token (or seed `Token`)",
      409: "Cannot create the job: another owner's job has this id",
      413: "Cannot accept the request: the body is over 64 KiB",
      422: "Cannot accept the request: a field (or `Idempotency-Key`) is invalid",
      429: "Cannot accept the job: the owner's rate limit or active-job limit is reached",
      ...SERVER_ERRORS,
      503: "Cannot accept the job: the queue is full, or the job store is unreachable",
    }),
  },
});

/** The seed body's `Token`, when the body has one. */
async function bodyToken(c: Context): Promise<string | undefined> {
  const token = (await c.req.json() as { Token?: unknown }).Token;
  return typeof token === "string" ? token : undefined;
}

/** Routes that create jobs. */
export function imageRoutes(deps: AppDeps) {
  // The caller first (header or seed `Token`), so that nobody learns anything from a 422. Passed as an
  // arrow below so that the path's type comes from the route, not from the hook's Context.
  const rejected = rejectAfter(async (c) => await authenticate(c, deps, await bodyToken(c)));
  return router().openapi(submitRoute, async (c) => {
    const body = c.req.valid("json");
    const owner = await authenticate(c, deps, body.token);
    const key = c.req.valid("header")["Idempotency-Key"];
    const id = body.id ?? key ?? newJobId();
    const { created, job, refused, retryAfterSec } = await deps.broker.submit({
      id,
      owner,
      prompt: body.prompt,
      model: body.model,
      aspectRatio: body.aspectRatio,
    }, {
      maxActivePerOwner: deps.config.MAX_ACTIVE_JOBS_PER_OWNER,
      maxQueued: deps.config.MAX_QUEUE_LENGTH,
      ratePerMinute: deps.config.RATE_LIMIT_PER_MINUTE,
    });
    if (refused === "rate_limited") {
      throw httpErrors.rateLimited(
        retryAfterSec ?? 60,
        "Cannot accept the job: rate limit reached",
      );
    }
    if (refused === "owner_busy") {
      throw httpErrors.rateLimited(5, "Cannot accept the job: too many of your jobs are active");
    }
    if (refused === "backlog") {
      throw httpErrors.unavailable(5, "Cannot accept the job: the queue is full");
    }
    if (!created && job.owner !== owner) {
      throw httpErrors.conflict("Cannot create the job: the id is already in use");
    }
    deps.metrics.submitted.inc({ result: created ? "created" : "existing" });
    if (created) deps.nudge?.();
    const payload = {
      id: job.id,
      status: job.status,
      created_at: job.createdAt,
      urls: await jobUrls(deps, job),
    };
    const headers = { Location: `/v1/jobs/${encodeURIComponent(job.id)}` };
    return created ? c.json(payload, 202, headers) : c.json(payload, 200, headers);
  }, (result, c) => rejected(result, c));
}
