/** Builds the Hono application from its dependencies; nothing here listens or connects. */
import { cors } from "hono/cors";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import { withContext } from "@logtape/logtape";
import { redactUrl } from "../lib/logging.ts";
import { httpErrors } from "../lib/errors.ts";
import { type AppDeps, type AppEnv, optionalRoutes, router } from "./deps.ts";
import { respond, toHttpError } from "./errors.ts";
import { imageRoutes } from "./images.ts";
import { jobRoutes } from "./jobs.ts";
import { jobListRoutes } from "./job_list.ts";
import { usageRoutes } from "./usage.ts";
import { jobImageRoutes } from "./job_image.ts";
import { jobImagesRoutes } from "./job_images.ts";
import { eventRoutes } from "./events.ts";
import { allEventRoutes } from "./all_events.ts";
import { SseStreams } from "./sse_streams.ts";
import { wsRoutes } from "./ws.ts";
import { opsRoutes } from "./ops.ts";
import { devRoutes } from "./dev.ts";
import { webRoutes } from "./web.ts";
import { serveDocument } from "./document.ts";
import { answerWrongMethods } from "./methods.ts";

export type { AppDeps, AppEnv };

/** The `/v1` routes, chained so that their types add up. */
function apiRoutes(deps: AppDeps) {
  const streams = new SseStreams(deps); // one keepalive timer for both SSE routes
  return router()
    .route("/", imageRoutes(deps))
    .route("/", jobListRoutes(deps))
    .route("/", usageRoutes(deps))
    .route("/", jobRoutes(deps))
    .route("/", jobImageRoutes(deps))
    .route("/", jobImagesRoutes(deps))
    .route("/", eventRoutes(deps, streams))
    .route("/", allEventRoutes(deps, streams))
    .route("/", wsRoutes(deps))
    .route("/", devRoutes(deps));
}

/** Creates the application: operations routes always, `/v1` routes unless ROLE=worker. */
export function createApp(deps: AppDeps) {
  const { config, log } = deps;
  const app = router();
  // Request ids: a per-process random prefix and a counter, unique and far cheaper than a UUID each.
  const idPrefix = crypto.randomUUID().slice(0, 8);
  let requests = 0;
  app.use(requestId({ generator: () => `${idPrefix}-${(++requests).toString(36)}` }));
  app.use(async function refuseWhileDraining(c, next) {
    // A draining process takes nothing new (liveness and metrics still answer); /readyz is 503 too.
    const path = c.req.path;
    if (!deps.draining?.aborted || path === "/healthz" || path === "/metrics") return await next();
    const error = httpErrors.unavailable(
      5,
      "Cannot serve the request: this process is shutting down",
    );
    return c.json(error.toBody(), 503, { ...error.headers, Connection: "close" });
  });
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
  if (config.CORS_ORIGINS?.length) {
    // Image bytes read by ticket may be shown by the allowed origins' pages (<img src>): their
    // Cross-Origin-Resource-Policy lets them, where every other answer stays same-origin.
    app.use("/v1/jobs/:id/*", async function imagesCrossOrigin(c, next) {
      await next();
      if (/^\/v1\/jobs\/[^/]+\/images?(\/\d+)?$/.test(c.req.path)) {
        c.res.headers.set("Cross-Origin-Resource-Policy", "cross-origin");
      }
    });
  }
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
        allowHeaders: [
          "Authorization",
          "Content-Type",
          "Idempotency-Key",
          "Last-Event-ID",
          "Prefer",
          "If-None-Match",
        ],
        exposeHeaders: ["Location", "Retry-After", "X-Request-Id", "Preference-Applied", "ETag"],
      }),
    );
  }
  app.use(deps.metrics.middleware);
  app.onError((error, c) => respond(c, toHttpError(error, log)));
  app.notFound((c) => respond(c, httpErrors.notFound("Cannot find the route: no such path")));
  // A worker-only process serves no `/v1` routes.
  const api = config.ROLE === "worker" ? undefined : deps;
  // The page is served by every process, as the contract's operations list says (whatever ROLE).
  const routes = app
    .route("/", opsRoutes(deps))
    .route("/", webRoutes(deps))
    .route("/", optionalRoutes(api, apiRoutes));
  serveDocument(app);
  answerWrongMethods(app);
  return routes;
}

/** The application's type: `hc<AppType>(base)` from `hono/client` gives typed calls. */
export type AppType = ReturnType<typeof createApp>;
