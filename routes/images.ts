/** `POST /v1/images`: submit an image job. */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppDeps, AppEnv } from "./app.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { authenticate, JOB_ID, jobUrls, newJobId } from "./http.ts";
import { describeIssues, submitBody } from "./schemas.ts";

/** Maximum JSON body size. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Routes that create jobs. */
export function imageRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post(
    "/v1/images",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw httpErrors.tooLarge();
      },
    }),
    async (c) => {
      let raw: unknown;
      try {
        raw = await c.req.json();
      } catch (error) {
        if (error instanceof HttpError) throw error;
        throw httpErrors.invalid("Cannot parse the body: it must be a JSON object");
      }
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        throw httpErrors.invalid("Cannot parse the body: it must be a JSON object");
      }
      const parsed = submitBody.safeParse(raw);
      const owner = await authenticate(c, deps, parsed.success ? parsed.data.token : tokenOf(raw));
      if (!parsed.success) {
        throw new HttpError(422, "invalid_request", describeIssues(parsed.error));
      }
      const body = parsed.data;
      const key = c.req.header("Idempotency-Key");
      if (key !== undefined && !JOB_ID.test(key)) {
        throw new HttpError(
          422,
          "invalid_request",
          "Cannot accept the request: bad Idempotency-Key",
        );
      }
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
      const location = `/v1/jobs/${encodeURIComponent(job.id)}`;
      const payload = {
        id: job.id,
        status: job.status,
        created_at: job.createdAt,
        urls: await jobUrls(deps, job),
      };
      return c.json(payload, created ? 202 : 200, { Location: location });
    },
  );
  return app;
}

function tokenOf(raw: object): string | undefined {
  const token = (raw as { Token?: unknown }).Token;
  return typeof token === "string" ? token : undefined;
}
