/** Builds the Hono application from its dependencies; nothing here listens or connects. */
import { type Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { cors } from "hono/cors";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import { type Logger, withContext } from "@logtape/logtape";
import type { Auth } from "../lib/auth/jwt.ts";
import { redactUrl } from "../lib/logging.ts";
import type { StreamSlots } from "../lib/live/stream_slots.ts";
import type { Config } from "../lib/config.ts";
import { HttpError, httpErrors, isTransient } from "../lib/errors.ts";
import type { Metrics } from "../lib/metrics.ts";
import type { Broker } from "../lib/queue/types.ts";
import type { Relay } from "../lib/live/relay.ts";
import type { Tickets } from "../lib/auth/tickets.ts";
import { imageRoutes } from "./images.ts";
import { jobRoutes } from "./jobs.ts";
import { eventRoutes } from "./events.ts";
import { wsRoutes } from "./ws.ts";
import { opsRoutes } from "./ops.ts";
import { webRoutes } from "./web.ts";

/** Everything the HTTP routes need, passed in. */
export interface AppDeps {
  config: Config;
  broker: Broker;
  auth: Auth;
  tickets: Tickets;
  /** This process's relay; null in a worker-only process. */
  relay: Relay | null;
  log: Logger;
  metrics: Metrics;
  /** Open SSE/WebSocket connections per owner in this process. */
  streams: StreamSlots;
  /** Tells this process's worker that a job was just queued (ends an idle poll pause). */
  nudge?: () => void;
}

/** Variables routes set on the request context. */
export type AppEnv = { Variables: { requestId: string } };

/** Maps any thrown error to the contract's error body; 503 only for "not now" failures, else 500. */
export function toHttpError(error: unknown, log: Logger): HttpError {
  if (error instanceof HttpError) {
    if (error.status >= 500 && error.cause !== undefined) logCause(log, error.cause);
    return error;
  }
  logCause(log, error);
  if (isTransient(error)) {
    return httpErrors.unavailable(5, "Cannot reach the job store: try again shortly");
  }
  return new HttpError(500, "internal", "Cannot complete the request: internal error");
}

/** Logs a server fault with its cause chain at error level, tokens masked. */
function logCause(log: Logger, error: unknown): void {
  log.error("Cannot serve the request: {cause}", { cause: describeError(error) });
}

const JWT_LIKE = /eyJ[\w-]+\.[\w-]+\.[\w-]*/g;

/** One line naming an error and its causes (`A: x <- B: y`), with anything JWT-like masked. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    parts.push(current instanceof Error ? `${current.name}: ${current.message}` : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(" <- ").replace(JWT_LIKE, "[REDACTED]");
}

/** The error as a response built on the context, so headers set by middleware (request id) stay. */
function respond(c: Context, http: HttpError): Response {
  return c.json(http.toBody(), http.status as ContentfulStatusCode, http.headers);
}

/** Creates the application: operations routes always, `/v1` routes unless ROLE=worker. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { config, log } = deps;
  const app = new Hono<AppEnv>();
  // Request ids: a per-process random prefix and a counter, unique and far cheaper than a UUID each.
  const idPrefix = crypto.randomUUID().slice(0, 8);
  let requests = 0;
  app.use(requestId({ generator: () => `${idPrefix}-${(++requests).toString(36)}` }));
  app.use(async function logRequest(c, next) {
    const start = performance.now();
    await withContext({ requestId: c.get("requestId") }, async () => {
      await next();
      const failed = c.res.status >= 500;
      if (!failed && !log.isEnabledFor("debug")) return;
      const ms = Math.round((performance.now() - start) * 10) / 10;
      const url = redactUrl(c.req.path + new URL(c.req.url).search);
      const line = { method: c.req.method, url, status: c.res.status, ms };
      if (failed) log.error("{method} {url} {status} {ms} ms", line);
      else log.debug("{method} {url} {status} {ms} ms", line);
    });
  });
  // An API: keep the headers that matter to it, skip the legacy browser ones (each costs per response).
  app.use(secureHeaders({
    crossOriginEmbedderPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  }));
  if (config.CORS_ORIGINS?.length) {
    app.use(
      "/v1/*",
      cors({
        origin: config.CORS_ORIGINS,
        allowHeaders: ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        exposeHeaders: ["Location", "Retry-After", "X-Request-Id"],
      }),
    );
  }
  app.use(deps.metrics.middleware);
  app.onError((error, c) => respond(c, toHttpError(error, log)));
  app.notFound((c) => respond(c, httpErrors.notFound("Cannot find the route: no such path")));
  app.route("/", opsRoutes(deps));
  if (config.ROLE !== "worker") {
    app.route("/", webRoutes(deps));
    app.route("/", imageRoutes(deps));
    app.route("/", jobRoutes(deps));
    app.route("/", eventRoutes(deps));
    app.route("/", wsRoutes(deps));
  }
  return app;
}
