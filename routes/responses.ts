/** Response schemas of the HTTP API, per status code, the error body included; the document shows them. */
import { z } from "@hono/zod-openapi";
import type { ErrorCode } from "../lib/errors.ts";
import { notificationSchema } from "../lib/live/notifications.ts";
import { jobId } from "./schemas.ts";

const ERROR_CODES = [
  "invalid_request",
  "unauthorized",
  "not_found",
  "conflict",
  "payload_too_large",
  "rate_limited",
  "quota_exceeded",
  "unavailable",
  "internal",
] as const satisfies readonly ErrorCode[];

/** The contract's error body, the same for every error status. */
export const errorBody = z.object({
  error: z.object({
    code: z.enum(ERROR_CODES),
    message: z.string().min(1).openapi({ description: "One sentence for a human" }),
  }).strict(),
}).strict().openapi("Error");

const when = z.iso.datetime({ offset: true }).openapi({ example: "2026-11-24T12:00:00.000Z" });

/** A job's status as the contract names it. */
export const jobStatus = z.enum(["queued", "running", "succeeded", "failed", "canceled"])
  .openapi("JobStatus");

const mimeType = z.string().regex(/^image\//).openapi({
  description: "Media type read from the bytes",
  example: "image/jpeg",
});

/** One image of a succeeded job: its media type and its bytes' URL (with a read ticket). */
const imageLink = z.object({
  mime_type: mimeType,
  url: z.string().openapi({ example: "/v1/jobs/fox-1/images/0?ticket=eyJ…" }),
}).strict().openapi("ImageLink");

const resultFields = {
  mime_type: mimeType.openapi({ description: "Media type of the first image, from its bytes" }),
  revised_prompt: z.string().optional(),
  images: z.array(imageLink).optional().openapi({
    description: "Every image of the job, in order (`n` of them, fewer when the provider's " +
      "moderation withheld some), each served by `GET /v1/jobs/{id}/images/{index}`",
  }),
};

/** The image of a succeeded job, inline. */
const jobResult = z.object({
  image: z.string().regex(/^data:image\/[\w.+-]+;base64,/).openapi({
    description: "The first image as a data URL",
  }),
  ...resultFields,
}).strict().openapi("JobResult");

/** A succeeded job's result in a listing: the image itself is left out (see `urls.image`). */
const listedResult = z.object(resultFields).strict().openapi("ListedJobResult");

/** Where to follow a job; the links carry a short-lived read-only ticket for browsers. */
const jobUrls = z.object({
  self: z.string().openapi({ example: "/v1/jobs/fox-1" }),
  events: z.string().openapi({ example: "/v1/jobs/fox-1/events?ticket=eyJ…" }),
  websocket: z.string().openapi({ example: "/v1/ws?ticket=eyJ…" }),
  image: z.string().optional().openapi({
    description: "The image's bytes (with a ticket); on a job, once it succeeded",
    example: "/v1/jobs/fox-1/image?ticket=eyJ…",
  }),
}).strict().openapi("JobUrls");

const jobFields = {
  id: jobId,
  prompt: z.string(),
  model: z.string().optional(),
  aspect_ratio: z.string().optional(),
  n: z.number().int().min(1).max(10).optional().openapi({ description: "Images asked for" }),
  resolution: z.enum(["1k", "2k"]).optional(),
  quality: z.enum(["low", "medium", "high"]).optional(),
  created_at: when,
  updated_at: when,
  attempts: z.number().int().min(0).openapi({ description: "Provider attempts so far" }),
  usage: z.object({
    images: z.number().int().min(0),
    cost_usd: z.number().min(0).openapi({
      description: "From the provider's usage.cost_in_usd_ticks",
    }),
  }).strict().optional().openapi({ description: "What the provider charged, once it answered" }),
  urls: jobUrls.optional(),
};

const queuePosition = z.number().int().min(0).openapi({
  description:
    "While queued: about how many jobs run before this one. An estimate: the entries waiting " +
    "for a worker in its partition, plus the jobs the owners' fair turns put before it in its " +
    "partition's waiting room, times the number of partitions (a job waiting out a retry " +
    "backoff counts every waiting job as ahead of it)",
});

/** The job document's variants by status, with `result` of the given shape when succeeded. */
function jobVariants<R extends z.ZodType>(result: R) {
  return [
    z.object({
      ...jobFields,
      status: z.literal("queued"),
      queue_position: queuePosition.optional(),
    })
      .strict(),
    z.object({ ...jobFields, status: z.literal("running") }).strict(),
    z.object({ ...jobFields, status: z.literal("succeeded"), result: result.optional() }).strict(),
    z.object({
      ...jobFields,
      status: z.literal("failed"),
      error: z.string().openapi({ description: "The user-facing failure message" }),
      error_code: z.string().optional().openapi({
        description: "Why, for a machine: `content_policy` when the image provider refused " +
          "the request",
        example: "content_policy",
      }),
    }).strict(),
    z.object({ ...jobFields, status: z.literal("canceled") }).strict(),
  ] as const;
}

/** `GET /v1/jobs/{id}`: `result` only when succeeded, `error` only when failed. */
export const jobSchema = z.discriminatedUnion("status", jobVariants(jobResult)).openapi("Job");

/** A job as `GET /v1/jobs/{id}` shows it. */
export type Job = z.infer<typeof jobSchema>;

/** A job as `GET /v1/jobs` lists it: the job document without `result.image`. */
export const listedJob = z.discriminatedUnion("status", jobVariants(listedResult))
  .openapi("ListedJob");

/** `GET /v1/jobs`: a page of the caller's jobs, newest first. */
export const jobPage = z.object({
  data: z.array(listedJob),
  next_cursor: z.string().nullable().openapi({
    description: "Pass as `cursor` for the next page; null on the last page",
  }),
}).strict().openapi("JobPage");

/** `POST /v1/images`: the job just queued (202) or the one that already had this id (200). */
export const submitAnswer = z.object({
  id: jobId,
  status: jobStatus,
  created_at: when,
  urls: jobUrls,
}).strict().openapi("SubmitAnswer");

/** `POST /v1/images` 200: the existing job's submit answer or, after `Prefer: wait`, the ended job. */
export const submitOrJob = z.union([submitAnswer, jobSchema]);

/** `DELETE /v1/jobs/{id}`. */
export const cancelAnswer = z.object({ id: jobId, status: z.literal("canceled") }).strict()
  .openapi("CancelAnswer");

/** `POST /v1/dev/token`. */
export const devTokenAnswer = z.object({
  token: z.string().openapi({ description: "An HS256 JWT valid for one hour" }),
  sub: z.string(),
}).strict().openapi("DevTokenAnswer");

/** `GET /healthz`. */
export const healthAnswer = z.object({ status: z.literal("ok") }).strict().openapi("Health");

/** `GET /readyz`. */
export const readyAnswer = z.object({
  status: z.literal("ready"),
  broker: z.enum(["redis", "upstash", "memory"]),
}).strict().openapi("Readiness");

/**
 * The notification object (SSE `data:`, WebSocket `notification`, webhooks): lib's schema, wrapped
 * here because schemas made before `@hono/zod-openapi` loads lack `.openapi()`.
 */
export const notification = z.discriminatedUnion("type", notificationSchema.options)
  .openapi("Notification");

/** A WebSocket message from the server. */
export const wsServerMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("authenticated") }),
  z.object({
    type: z.literal("notification"),
    event_id: z.string(),
    notification,
    cursor: z.string().optional().openapi({
      description: "After `subscribe_all`: the feed cursor to resume from (`subscribe_all.cursor`)",
    }),
  }),
  z.object({ type: z.literal("reset") }).openapi({
    description: "After `subscribe_all` with a cursor that is out of reach: re-read the jobs",
  }),
  z.object({
    type: z.literal("error"),
    code: z.enum(ERROR_CODES),
    message: z.string(),
    id: jobId.optional().openapi({ description: "The job the error is about, when there is one" }),
  }),
]).openapi("WsServerMessage");

/** A JSON body of `schema`. */
export function json<T extends z.ZodType>(schema: T) {
  return { "application/json": { schema } };
}

const retryAfter = {
  "Retry-After": {
    description: "Seconds to wait before trying again",
    schema: { type: "integer" as const, minimum: 1 },
  },
};

/** Error statuses a route may answer. */
type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 422 | 429 | 500 | 503;

/** An error response: the contract's body, and `Retry-After` on 429 and 503. */
interface ErrorResponse {
  description: string;
  headers?: typeof retryAfter;
  content: ReturnType<typeof json<typeof errorBody>>;
}

/** The error responses of a route, one description per status it can answer. */
export function errors<const T extends Partial<Record<ErrorStatus, string>>>(
  descriptions: T,
): { [K in keyof T]: ErrorResponse } {
  return Object.fromEntries(
    Object.entries(descriptions).map(([status, description]) => [status, {
      description: description as string,
      ...(status === "429" || status === "503" ? { headers: retryAfter } : {}),
      content: json(errorBody),
    }]),
  ) as { [K in keyof T]: ErrorResponse };
}

/** Descriptions of the errors every authenticated route shares. */
export const SERVER_ERRORS = {
  500: "Cannot complete the request: a fault of the service (logged with its cause)",
  503: "Cannot reach the job store or the key set right now: retry after `Retry-After`",
} as const;
