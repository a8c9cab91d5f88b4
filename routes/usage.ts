/** `GET /v1/usage`: the caller's images, cost and jobs of one UTC day, and what its quota leaves. */
import { createRoute, z } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { ticksToUsd, utcDay } from "../lib/pace/usage.ts";
import { rejectAfter } from "./errors.ts";
import { authenticate } from "./http.ts";
import { errors, json, SERVER_ERRORS } from "./responses.ts";

/** A UTC day as the query names it. */
const dayQuery = z.object({
  day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).refine((day) => {
    const time = Date.parse(`${day}T00:00:00Z`);
    return Number.isFinite(time) && new Date(time).toISOString().startsWith(day);
  }, "must be a real day").optional().openapi({
    description: "The UTC day, YYYY-MM-DD (default: today)",
    example: "2026-12-06",
  }),
});

/** The answer of `GET /v1/usage`. */
export const usageAnswer = z.object({
  day: z.string().openapi({ example: "2026-12-06" }),
  images: z.number().int().min(0).openapi({ description: "Images the provider made" }),
  cost_usd: z.number().min(0).openapi({ description: "What the provider said they cost" }),
  jobs: z.object({
    succeeded: z.number().int().min(0),
    failed: z.number().int().min(0),
    canceled: z.number().int().min(0),
  }).strict(),
  quota: z.object({
    images_per_day: z.number().int().min(1),
    remaining: z.number().int().min(0),
  }).strict().nullable().openapi({ description: "null without a cap" }),
}).strict().openapi("Usage");

/** The route definition of `GET /v1/usage`. */
export const usageRoute = createRoute({
  method: "get",
  path: "/v1/usage",
  operationId: "getUsage",
  tags: ["usage"],
  summary: "The caller's usage of one day",
  description:
    "Images, cost and ended jobs of the jobs the caller submitted that UTC day, and what " +
    "`MAX_IMAGES_PER_OWNER_PER_DAY` leaves (a job that fails or is canceled before its images were " +
    "made gives them back).",
  security: [{ bearer: [] }],
  request: { query: dayQuery },
  responses: {
    200: { description: "The day's figures", content: json(usageAnswer) },
    ...errors({
      401: "Cannot authenticate: no valid bearer token",
      422: "Cannot read the usage: `day` is not a day (YYYY-MM-DD)",
      ...SERVER_ERRORS,
    }),
  },
});

/** The usage route. */
export function usageRoutes(deps: AppDeps) {
  const rejected = rejectAfter((c) => authenticate(c, deps));
  return router().openapi(usageRoute, async (c) => {
    const owner = await authenticate(c, deps);
    const day = c.req.valid("query").day ?? utcDay(Date.now());
    const found = await deps.broker.usage(owner, day);
    const cap = deps.config.MAX_IMAGES_PER_OWNER_PER_DAY;
    return c.json({
      day,
      images: found.images,
      cost_usd: ticksToUsd(found.costUsdTicks),
      jobs: found.jobs,
      quota: cap > 0
        ? {
          images_per_day: cap,
          remaining: Math.max(0, cap - Math.max(found.reserved, found.images)),
        }
        : null,
    }, 200);
  }, (result, c) => rejected(result, c));
}
