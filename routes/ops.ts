/** Operations routes served by every process: health, readiness, metrics, API description, dev tokens. */
import { Hono } from "hono";
import { Scalar } from "@scalar/hono-api-reference";
import type { AppDeps, AppEnv } from "./app.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { openApiDocument } from "./openapi.ts";
import { describeIssues, devTokenBody } from "./schemas.ts";

/** Longest a readiness probe waits for the broker. */
export const READY_TIMEOUT_MS = 2_000;

/** The operations routes. */
export function opsRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const document = openApiDocument();
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    try {
      await Promise.race([
        deps.broker.ping(),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error("timeout")), READY_TIMEOUT_MS).unref?.()
        ),
      ]);
      return c.json({ status: "ready", broker: deps.broker.kind });
    } catch {
      return c.json(httpErrors.unavailable(5, "Cannot reach the broker").toBody(), 503, {
        "Retry-After": "5",
      });
    }
  });
  app.get("/metrics", async (c) => {
    const text = await deps.metrics.registry.metrics();
    return c.text(text, 200, { "Content-Type": deps.metrics.registry.contentType });
  });
  app.get("/openapi.json", (c) => c.json(document));
  app.get("/docs", Scalar({ url: "/openapi.json", pageTitle: "Image job service" }));
  // Dev tokens only while the process signs with its own random secret: otherwise no such route.
  const sign = deps.auth.sign;
  if (deps.config.devMode && sign) {
    app.post("/v1/dev/token", async (c) => {
      let raw: unknown = {};
      const text = await c.req.text();
      if (text.trim()) {
        try {
          raw = JSON.parse(text);
        } catch {
          throw httpErrors.invalid("Cannot parse the body: it must be a JSON object");
        }
      }
      const parsed = devTokenBody.safeParse(raw);
      if (!parsed.success) {
        throw new HttpError(422, "invalid_request", describeIssues(parsed.error));
      }
      const sub = parsed.data.sub ?? "dev-user";
      return c.json({ token: await sign(sub, 3600), sub });
    });
  }
  return app;
}
