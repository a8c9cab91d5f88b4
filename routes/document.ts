/** `GET /openapi.json`: the OpenAPI 3.1 document, generated from the route definitions of the app. */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "./deps.ts";
import { json, notification, wsServerMessage } from "./responses.ts";
import { wsMessage } from "./schemas.ts";

/** The route definition of `GET /openapi.json`. */
export const documentRoute = createRoute({
  method: "get",
  path: "/openapi.json",
  operationId: "getOpenApiDocument",
  tags: ["ops"],
  security: [],
  summary: "This document",
  responses: {
    200: {
      description: "The OpenAPI 3.1 document",
      content: json(
        z.object({ openapi: z.string(), info: z.object({}).loose(), paths: z.object({}).loose() })
          .loose(),
      ),
    },
  },
});

const DESCRIPTION =
  "Queue image jobs for xAI's Grok image model and follow them live (Server-Sent " +
  'Events or a WebSocket). Every error answers `{"error": {"code", "message"}}`. A known path ' +
  "asked with a method it does not serve answers 405 with `Allow` and code `invalid_request`; an " +
  "unknown path answers 404. The browser pages `/`, `/favicon.ico` and `/docs` are not part of the API " +
  "and are left out of this document.";

/** The document's fixed parts: everything but the paths and schemas the routes bring. */
const OBJECT_CONFIG = {
  openapi: "3.1.0",
  info: {
    title: "Image job service",
    version: "1.1.0",
    description: DESCRIPTION,
  },
  servers: [{ url: "/", description: "This service" }],
  tags: [
    { name: "jobs", description: "Submit, read and cancel image jobs" },
    { name: "live", description: "A job's notifications as they happen" },
    { name: "dev", description: "Development helpers (DEV_MODE=1 only)" },
    { name: "ops", description: "Health, readiness, metrics and this document" },
  ],
};

/**
 * Serves the document of every route registered on `app` so far and later; call it on the root app,
 * after mounting the routes (a sub-app's definitions are copied when it is mounted).
 */
export function serveDocument(app: OpenAPIHono<AppEnv>): void {
  const registry = app.openAPIRegistry;
  registry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "A JWT whose `sub` owns the jobs",
  });
  registry.registerComponent("securitySchemes", "ticket", {
    type: "apiKey",
    in: "query",
    name: "ticket",
    description:
      "A short-lived read-only ticket scoped to one job, from the submit answer's `urls`",
  });
  // Schemas the stream routes carry inside their bodies and messages.
  registry.register("Notification", notification);
  registry.register("WsClientMessage", wsMessage);
  registry.register("WsServerMessage", wsServerMessage);
  registry.registerPath(documentRoute);
  let document: unknown;
  app.get(documentRoute.getRoutingPath(), (c) => {
    document ??= app.getOpenAPI31Document(OBJECT_CONFIG);
    return c.json(document as Record<string, unknown>);
  });
}
