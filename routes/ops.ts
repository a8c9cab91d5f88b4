/** Operations routes served by every process: health, readiness, metrics and the API reference page. */
import { createRoute, z } from "@hono/zod-openapi";
import { docsRoutes } from "./docs.ts";
import { type AppDeps, router } from "./deps.ts";
import { httpErrors } from "../lib/errors.ts";
import { errors, healthAnswer, json, readyAnswer } from "./responses.ts";

/** Longest a readiness probe waits for the broker. */
export const READY_TIMEOUT_MS = 2_000;

/** The route definition of `GET /healthz`. */
export const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  operationId: "getHealth",
  tags: ["ops"],
  security: [],
  summary: "The process is alive",
  responses: { 200: { description: "Alive", content: json(healthAnswer) } },
});

/** The route definition of `GET /readyz`. */
export const readyRoute = createRoute({
  method: "get",
  path: "/readyz",
  operationId: "getReadiness",
  tags: ["ops"],
  security: [],
  summary: "The broker answers",
  description: `Pings the broker, waiting at most ${READY_TIMEOUT_MS} ms.`,
  responses: {
    200: { description: "Ready", content: json(readyAnswer) },
    ...errors({ 503: "Cannot reach the broker" }),
  },
});

/** The route definition of `GET /metrics`. */
export const metricsRoute = createRoute({
  method: "get",
  path: "/metrics",
  operationId: "getMetrics",
  tags: ["ops"],
  security: [],
  summary: "Prometheus metrics",
  responses: {
    200: {
      description: "Prometheus text exposition format",
      content: { "text/plain": { schema: z.string() } },
    },
  },
});

/** The operations routes. */
export function opsRoutes(deps: AppDeps) {
  const app = router()
    .openapi(healthRoute, (c) => c.json({ status: "ok" as const }, 200))
    .openapi(readyRoute, async (c) => {
      try {
        await Promise.race([
          deps.broker.ping(),
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error("timeout")), READY_TIMEOUT_MS).unref?.()
          ),
        ]);
        return c.json({ status: "ready" as const, broker: deps.broker.kind }, 200);
      } catch {
        const refused = httpErrors.unavailable(5, "Cannot reach the broker");
        return c.json(refused.toBody(), 503, refused.headers);
      }
    })
    .openapi(metricsRoute, async (c) => {
      const text = await deps.metrics.registry.metrics();
      return c.text(text, 200, { "Content-Type": deps.metrics.registry.contentType });
    });
  // A page for people, not part of the API: left out of the document.
  app.route("/", docsRoutes());
  return app;
}
