/** Request schemas of the HTTP API: the routes validate with them and the document is generated from them. */
import { z } from "@hono/zod-openapi";
import { JOB_ID } from "../lib/queue/types.ts";
import {
  MAX_DATA_URL_CHARS,
  MAX_REFERENCES,
  parseReference,
  type Reference,
} from "../lib/provider/references.ts";
import { parseWait } from "./prefer.ts";

/** Pattern of an event id (`Last-Event-ID`): a number, or a Redis stream id such as `1700000000000-0`. */
export const EVENT_ID = /^\d{1,20}(-\d{1,20})?$/;

/** A job id, client-chosen or server-made. */
export const jobId = z.string().regex(JOB_ID, "must be 1 to 128 of A-Z a-z 0-9 _ . : -")
  .openapi({ description: "1 to 128 of `A-Z a-z 0-9 _ . : -`", example: "fox-1" });

/** The `{id}` path parameter of a job's routes; any other value answers 404 like an unknown job. */
export const jobParams = z.object({ id: jobId });

/** An event id to resume after; empty means "from the start", like no value at all. */
export const resumeAfter = z.string().regex(
  new RegExp(`^(${EVENT_ID.source.slice(1, -1)})?$`),
  "must be an event id such as 3 or 1700000000000-0",
);

const prompt = z.string().trim()
  .min(1, "must be 1 to 4000 characters")
  .max(4000, "must be 1 to 4000 characters")
  .regex(/\S/, "must not be blank")
  .openapi({
    description: "What to draw: 1 to 4000 characters once surrounding whitespace is trimmed",
    example: "a red fox in snow",
  });

const model = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be a model name")
  .openapi({ description: "Provider model name; the service's default when absent" });
const aspectRatio = z.string().regex(
  /^(auto|\d{1,2}(\.\d{1,2})?:\d{1,2}(\.\d{1,2})?)$/,
  "must look like 16:9, 19.5:9 or auto",
).openapi({ example: "16:9" });
const token = z.string().max(8192).openapi({
  description: "Seed compatibility: the caller's JWT, used when there is no Authorization header",
});

/** Event types a webhook may ask for. */
export const EVENT_TYPES = ["queued", "started", "succeeded", "failed", "canceled"] as const;

/** The event types a webhook gets when it names none: the terminal ones. */
export const DEFAULT_WEBHOOK_EVENTS = ["succeeded", "failed", "canceled"] as const;

const webhook = z.url({ protocol: /^https?$/, error: "must be an http or https URL" })
  .max(2048, "must be at most 2048 characters")
  .openapi({
    description: "Where each notification is POSTed, signed per Standard Webhooks; needs the " +
      "service's WEBHOOK_SECRET. A loopback, private or link-local address is refused unless allowed",
    example: "https://example.com/hooks/images",
  });
const webhookEvents = z.array(z.enum(EVENT_TYPES)).min(1, "must name at least one event type")
  .max(EVENT_TYPES.length, "must not repeat an event type")
  .refine((types) => new Set(types).size === types.length, "must not repeat an event type")
  .openapi({
    description: "Event types to deliver (default: the terminal ones); only with `webhook`",
    example: ["succeeded", "failed"],
  });

const count = z.number({ error: "must be a whole number from 1 to 10" })
  .int("must be a whole number from 1 to 10")
  .min(1, "must be a whole number from 1 to 10")
  .max(10, "must be a whole number from 1 to 10")
  .openapi({
    description: "Images from one provider request, 1 to 10 (default 1)",
    example: 4,
  });
const resolution = z.enum(["1k", "2k"], { error: "must be 1k or 2k" })
  .openapi({ description: "Output resolution", example: "2k" });
const quality = z.enum(["low", "medium", "high"], { error: "must be low, medium or high" })
  .openapi({ description: "Output quality", example: "high" });
const images = z.array(
  z.string({ error: "must be strings" }).max(MAX_DATA_URL_CHARS + 64, "is over 10 MiB"),
  { error: "must be an array of 1 to 3 images" },
).min(1, "must be an array of 1 to 3 images").max(MAX_REFERENCES, "must hold at most 3 images")
  .transform((list, ctx) => {
    // Checked once here (a data URL is decoded once), handed on as parsed references.
    const parsed: Reference[] = [];
    list.forEach((text, i) => {
      const reference = parseReference(text);
      if (typeof reference === "string") {
        ctx.issues.push({ code: "custom", path: [i], message: reference, input: text });
      } else parsed.push(reference);
    });
    return parsed;
  })
  .openapi({
    description: "Reference images (1 to 3) that make the job an edit (xAI's images/edits): each " +
      "a `data:` URL (JPEG, PNG or WebP, at most 10 MiB decoded), an `https://` URL (handed to " +
      "xAI, which fetches it), or `job:<id>` / `job:<id>#<index>`, an image of one of your " +
      "succeeded jobs",
    example: ["job:fox-1#0"],
  });

/** The fields of an image request besides the prompt, in both body shapes. */
const imageFields = {
  n: count.optional(),
  resolution: resolution.optional(),
  quality: quality.optional(),
  images: images.optional(),
};

/** Body of `POST /v1/images` in the v1 shape. */
const submitRequest = z.object({
  prompt,
  id: jobId.optional().openapi({
    description:
      "Client-chosen job id (idempotency key); the server makes an unguessable one when absent",
  }),
  model: model.optional(),
  aspect_ratio: aspectRatio.optional(),
  webhook: webhook.optional(),
  webhook_events: webhookEvents.optional(),
  ...imageFields,
  Token: token.optional(),
  Prompt: z.string().optional().openapi({ description: "Ignored when `prompt` is present" }),
  Id: jobId.optional().openapi({ description: "Ignored when `id` is present" }),
}).openapi("SubmitRequest");

/** Body of `POST /v1/images` in the seed's shape (`{Token, Prompt, Id}`), without `prompt`. */
const seedSubmitRequest = z.looseObject({
  Prompt: prompt,
  Id: jobId.optional(),
  Token: token.optional(),
  id: jobId.optional(),
  model: model.optional(),
  aspect_ratio: aspectRatio.optional(),
  webhook: webhook.optional(),
  webhook_events: webhookEvents.optional(),
  ...imageFields,
}).refine((body) => body.prompt === undefined, {
  path: ["prompt"],
  message: "must be 1 to 4000 characters",
}).openapi("SeedSubmitRequest");

/** Body of `POST /v1/images`: the v1 fields, or the seed's `{Token, Prompt, Id}`. */
export const submitBody = z.union([submitRequest, seedSubmitRequest]).transform((body) => ({
  prompt: typeof body.prompt === "string" ? body.prompt : body.Prompt ?? "",
  id: body.id ?? body.Id,
  token: body.Token,
  model: body.model,
  aspectRatio: body.aspect_ratio,
  webhook: body.webhook,
  webhookEvents: body.webhook_events,
  n: body.n,
  resolution: body.resolution,
  quality: body.quality,
  images: body.images,
}));

/** Headers of `POST /v1/images`. */
export const submitHeaders = z.object({
  "Idempotency-Key": jobId.optional().openapi({
    description: "Same as the body's `id`; the body's `id` wins when both are given",
  }),
  Prefer: z.string().max(1024).refine((value) => parseWait(value) !== "invalid", {
    message: "must have wait=N with N a whole number of seconds from 1 (over 60 counts as 60)",
  }).optional().openapi({
    description: "RFC 7240 preferences; `wait=N` (1 to 60 s, more counts as 60) holds the answer " +
      "until the job ends (200 with the job and `Preference-Applied`) or N s pass (the usual answer)",
    example: "wait=30",
  }),
});

/** Query of `GET /v1/jobs`. */
export const listQuery = z.object({
  limit: z.coerce.number<string>().int("must be a whole number from 1 to 100")
    .min(1, "must be a whole number from 1 to 100")
    .max(100, "must be a whole number from 1 to 100")
    .optional()
    .openapi({ description: "Jobs per page, 1 to 100 (default 20)", example: 20 }),
  status: z.enum(["queued", "running", "succeeded", "failed", "canceled"], {
    error: "must be one of queued, running, succeeded, failed, canceled",
  }).optional().openapi({ description: "Only jobs in this status" }),
  cursor: z.string().min(1).max(2048).optional().openapi({
    description: "The previous page's `next_cursor`",
  }),
});

/** Body of `POST /v1/dev/token`. */
export const devTokenBody = z.object({
  sub: z.string().min(1).max(256).optional().openapi({
    description: "Subject of the token; `dev-user` when absent",
  }),
}).openapi("DevTokenRequest");

/** A WebSocket message from the client. */
export const wsMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auth"), token: z.string().min(1).max(8192) }),
  z.object({
    type: z.literal("subscribe"),
    id: jobId,
    last_event_id: z.string().regex(EVENT_ID).optional(),
  }),
  z.object({ type: z.literal("unsubscribe"), id: jobId }),
  z.object({
    type: z.literal("subscribe_all"),
    cursor: z.string().min(1).max(1024).optional(),
  }),
  z.object({ type: z.literal("unsubscribe_all") }),
]).openapi("WsClientMessage");
