/** `GET /v1/ws`: notifications of several jobs over one WebSocket, authenticated by ticket or message. */
import { createRoute } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { errors, SERVER_ERRORS } from "./responses.ts";
import { serveSocket } from "./ws_session.ts";

export { AUTH_DEADLINE_MS, MAX_MESSAGE_BYTES, MAX_PENDING_EXTRA } from "./ws_session.ts";

/** True when a browser origin may open a socket: no Origin (not a browser), same origin, or allowed. */
export function originAllowed(
  origin: string | undefined,
  host: string | undefined,
  allowed: string[],
) {
  if (!origin) return true;
  if (allowed.includes(origin)) return true;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** The route definition of `GET /v1/ws` (the upgrade; the messages are in its description). */
export const wsRoute = createRoute({
  method: "get",
  path: "/v1/ws",
  operationId: "openJobSocket",
  tags: ["live"],
  summary: "Notifications of several jobs over one WebSocket",
  description: "Auth: `?ticket=` (scoped to its job), or a first message " +
    '`{"type":"auth","token":"<JWT>"}` within 5 s (else close 1008). Then the client sends ' +
    '`{"type":"subscribe","id":"<job id>","last_event_id":"optional"}` or ' +
    '`{"type":"unsubscribe","id":"<job id>"}`, or `{"type":"subscribe_all","cursor":"optional"}` ' +
    "(every job of the owner, as `GET /v1/events`: bearer-authenticated sockets only, one " +
    "subscription against the cap, each notification with the `cursor` to resume from; " +
    '`{"type":"reset"}` when that cursor is out of reach) and `{"type":"unsubscribe_all"}` ' +
    "(`#/components/schemas/WsClientMessage`); the server " +
    'sends `{"type":"authenticated"}`, `{"type":"notification","event_id":"…","notification":{…}}` ' +
    'and `{"type":"error","code":"…","message":"…","id":"optional"}` ' +
    "(`#/components/schemas/WsServerMessage`), in order, replayed from `last_event_id` as on SSE. " +
    "Close codes: 1008 (auth failed, timed out or expired; too many waiting messages), 1009 (a " +
    "message over 16 KiB or not text), 1013 (too many open streams). Cross-origin browsers are " +
    "refused unless allowed by configuration.",
  security: [{ ticket: [] }, {}],
  responses: {
    101: { description: "Switching protocols: the socket is open" },
    ...errors({
      400: "Cannot open the socket: a WebSocket upgrade is required",
      401: "Cannot authenticate: the ticket is invalid or expired",
      403: "Cannot open the socket: origin not allowed",
      500: SERVER_ERRORS[500],
    }),
  },
});

/** The WebSocket route. */
export function wsRoutes(deps: AppDeps) {
  const app = router();
  // Described, not validated by the framework: the origin is checked before anything else.
  app.openAPIRegistry.registerPath(wsRoute);
  app.get("/v1/ws", async (c) => {
    if (
      !originAllowed(c.req.header("Origin"), c.req.header("Host"), deps.config.CORS_ORIGINS ?? [])
    ) {
      const refused = new HttpError(
        403,
        "unauthorized",
        "Cannot open the socket: origin not allowed",
      );
      return c.json(refused.toBody(), 403);
    }
    // Header values are case-insensitive: `Upgrade: WebSocket` is as good as `websocket`.
    if (c.req.header("Upgrade")?.toLowerCase() !== "websocket") {
      throw httpErrors.invalid("Cannot open the socket: a WebSocket upgrade is required");
    }
    const ticket = c.req.query("ticket");
    let scope: { owner: string; jobId: string } | null = null;
    if (ticket) scope = await deps.tickets.verify(ticket);
    const protocol = c.req.header("Sec-WebSocket-Protocol")?.split(",")[0]?.trim();
    let upgraded;
    try {
      upgraded = Deno.upgradeWebSocket(c.req.raw, protocol ? { protocol } : {});
    } catch {
      throw httpErrors.invalid("Cannot open the socket: a WebSocket upgrade is required");
    }
    serveSocket(deps, scope, upgraded.socket);
    return upgraded.response;
  });
  return app;
}
