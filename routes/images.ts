/** `POST /v1/images`: submit an image job. */
import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type AppDeps, router } from "./deps.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { isTerminal } from "../lib/live/notifications.ts";
import type { EventType } from "../lib/live/notifications.ts";
import { webhookUrlProblem } from "../lib/webhooks/egress.ts";
import { jsonBody } from "./body.ts";
import { rejectAfter } from "./errors.ts";
import { authenticate, describeJob, jobUrls, newJobId } from "./http.ts";
import { parseWait, waitForEnd } from "./prefer.ts";
import { checkSubmitSize, MAX_REQUEST_BYTES, storedReferences } from "./references.ts";
import { errors, json, SERVER_ERRORS, submitAnswer, submitOrJob } from "./responses.ts";
import { DEFAULT_WEBHOOK_EVENTS, submitBody, submitHeaders } from "./schemas.ts";

export { MAX_BODY_BYTES } from "./references.ts";

const location = {
  Location: {
    description: "The job's status URL",
    schema: { type: "string" as const, example: "/v1/jobs/fox-1" },
  },
};

const applied = {
  ...location,
  "Preference-Applied": {
    description: "`wait=N` when the answer is the job that ended while the request waited",
    schema: { type: "string" as const, example: "wait=30" },
  },
};

/** An OpenAPI link from the submit answer to an operation on the job it names. */
function jobLink(operationId: string, description: string) {
  return { operationId, parameters: { id: "$response.body#/id" }, description };
}

/** Where a fuzzer or a client goes next with the job it just submitted. */
const jobLinks = {
  getJob: jobLink("getJob", "The job's status and result"),
  getJobImage: jobLink("getJobImage", "The image's bytes, once the job succeeded"),
  getJobImageAt: {
    operationId: "getJobImageAt",
    parameters: { id: "$response.body#/id", index: "0" },
    description: "The first of the job's images by its index (`result.images` lists them all)",
  },
  cancelJob: jobLink("cancelJob", "Cancel the job"),
  streamJobEvents: jobLink("streamJobEvents", "The job's notifications as Server-Sent Events"),
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
    "`Authorization` header. The body is read as JSON whatever its `Content-Type`. With " +
    "`Prefer: wait=N` the answer waits up to N s: a job that ends in time answers 200 with the job " +
    "document (as `GET /v1/jobs/{id}`) and `Preference-Applied: wait=N`.",
  security: [{ bearer: [] }],
  middleware: jsonBody({
    maxBytes: MAX_REQUEST_BYTES,
    objectOnly: true,
    check: checkSubmitSize,
  }),
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
      description: "The job that already had this id (same owner), in its current status; or, " +
        "after `Prefer: wait`, the job document of the job that ended meanwhile",
      headers: applied,
      links: jobLinks,
      content: json(submitOrJob),
    },
    ...errors({
      400: "Cannot parse the body: it is not a JSON object",
      401: "Cannot authenticate: no valid bearer token (or seed `Token`)",
      409: "Cannot create the job: another owner's job has this id",
      413: "Cannot accept the request: the body is over 64 KiB besides its reference images " +
        "(each a data: URL of at most 10 MiB decoded)",
      422: "Cannot accept the request: a field (or `Idempotency-Key`, or `Prefer`) is invalid, a " +
        "webhook is refused, or a reference image is not an image of one of your succeeded jobs",
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

/** A 422 that refuses the `subject` of a submit (the request, its webhook) for `state`. */
function refuse(subject: string, state: string): HttpError {
  return new HttpError(422, "invalid_request", `Cannot accept the ${subject}: ${state}`);
}

/** The webhook fields as the broker stores them, after the checks a submit makes (422 otherwise). */
function webhookOf(
  deps: AppDeps,
  body: { webhook?: string; webhookEvents?: EventType[] },
): { webhook?: string; webhookEvents?: EventType[] } {
  if (body.webhook === undefined) {
    if (body.webhookEvents !== undefined) throw refuse("request", "webhook_events needs a webhook");
    return {};
  }
  if (!deps.config.WEBHOOK_SECRET) {
    throw refuse("webhook", "the service has no WEBHOOK_SECRET");
  }
  const problem = webhookUrlProblem(body.webhook, deps.config.WEBHOOK_HOSTS ?? []);
  if (problem !== null) throw refuse("webhook", problem);
  return {
    webhook: body.webhook,
    webhookEvents: body.webhookEvents ?? [...DEFAULT_WEBHOOK_EVENTS],
  };
}

/** Routes that create jobs. */
export function imageRoutes(deps: AppDeps) {
  // The caller first (header or seed `Token`), so that nobody learns anything from a 422. Passed as an
  // arrow below so that the path's type comes from the route, not from the hook's Context.
  const rejected = rejectAfter(async (c) => await authenticate(c, deps, await bodyToken(c)));
  return router().openapi(submitRoute, async (c) => {
    const body = c.req.valid("json");
    const owner = await authenticate(c, deps, body.token);
    const headers = c.req.valid("header");
    const key = headers["Idempotency-Key"];
    const wait = parseWait(headers.Prefer);
    const hook = webhookOf(deps, body);
    const references = await storedReferences(deps, owner, body.images);
    const id = body.id ?? key ?? newJobId();
    const { created, job, refused, retryAfterSec } = await deps.broker.submit({
      id,
      owner,
      prompt: body.prompt,
      model: body.model,
      aspectRatio: body.aspectRatio,
      n: body.n,
      resolution: body.resolution,
      quality: body.quality,
      references,
      ...hook,
    }, {
      maxActivePerOwner: deps.config.MAX_ACTIVE_JOBS_PER_OWNER,
      maxQueued: deps.config.MAX_QUEUE_LENGTH,
      ratePerMinute: deps.config.RATE_LIMIT_PER_MINUTE,
      maxImagesPerDay: deps.config.MAX_IMAGES_PER_OWNER_PER_DAY,
      freshId: body.id === undefined && key === undefined,
    });
    if (refused === "quota_exceeded") {
      throw new HttpError(
        429,
        "quota_exceeded",
        "Cannot accept the job: your images for today are used up",
        { headers: { "Retry-After": String(Math.max(1, retryAfterSec ?? 60)) } },
      );
    }
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
    const location = { Location: `/v1/jobs/${encodeURIComponent(job.id)}` };
    // An open wait holds one of the owner's stream slots (MAX_STREAMS_PER_OWNER): past them, the
    // usual answer at once.
    const relay = typeof wait === "number" ? deps.relay : undefined;
    const slot = relay ? deps.streams.acquire(owner) : null;
    if (relay && slot && typeof wait === "number") {
      // A drain answers the wait at once (the usual 202), before the relay and the broker close.
      const signal = deps.draining
        ? AbortSignal.any([c.req.raw.signal, deps.draining])
        : c.req.raw.signal;
      let ended = isTerminal(job.status);
      try {
        ended ||= await waitForEnd(relay, job, { ms: wait * 1000, signal });
      } finally {
        slot();
      }
      const view = ended ? await deps.broker.get(job.id, { image: true }) : null;
      if (view && isTerminal(view.status)) {
        const applied = { ...location, "Preference-Applied": `wait=${wait}` };
        return c.json(await describeJob(deps, view), 200, applied);
      }
    }
    const payload = {
      id: job.id,
      status: job.status,
      created_at: job.createdAt,
      urls: await jobUrls(deps, job, { image: true }),
    };
    return created ? c.json(payload, 202, location) : c.json(payload, 200, location);
  }, (result, c) => rejected(result, c));
}
