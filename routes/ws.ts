/** `GET /v1/ws`: notifications of several jobs over one WebSocket, authenticated by ticket or message. */
import { createRoute, type z } from "@hono/zod-openapi";
import { decodeJwt } from "jose";
import { type AppDeps, router } from "./deps.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { toHttpError } from "./errors.ts";
import { JOB_ID } from "./http.ts";
import { notificationJson, type StoredEvent } from "../lib/live/notifications.ts";
import type { Subscription } from "../lib/live/relay.ts";
import { errors, SERVER_ERRORS } from "./responses.ts";
import { wsMessage } from "./schemas.ts";

/** Time a socket has to send its `auth` message. */
export const AUTH_DEADLINE_MS = 5_000;
/** Largest message a client may send. */
export const MAX_MESSAGE_BYTES = 16 * 1024;
/** Messages that may wait their turn beyond the subscription cap before the socket is closed. */
export const MAX_PENDING_EXTRA = 64;

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
    '`{"type":"unsubscribe","id":"<job id>"}` (`#/components/schemas/WsClientMessage`); the server ' +
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

type Message = z.infer<typeof wsMessage>;
/** A queued message: a parsed one, a repeated `auth` (its token dropped), or one that did not parse. */
type Queued = Message | { type: "auth_again" } | { type: "bad" };

/**
 * Serves one socket. Its messages are handled one after another, in the order sent, so `auth` followed
 * at once by `subscribe` works however long the token check takes.
 */
function serveSocket(
  deps: AppDeps,
  scope: { owner: string; jobId: string } | null,
  socket: WebSocket,
): void {
  const maxSubscriptions = deps.config.WS_MAX_SUBSCRIPTIONS;
  let owner = scope?.owner ?? null;
  const subs = new Map<string, Subscription>();
  const queue: Queued[] = [];
  let draining = false;
  let authSeen = false;
  let closed = false;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let expiry: ReturnType<typeof setTimeout> | undefined;
  let release: (() => void) | null = null;

  const send = (message: unknown) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };
  const close = (code: number, reason: string) => {
    if (socket.readyState <= WebSocket.OPEN) socket.close(code, reason);
  };
  const fail = (error: unknown, id?: string) => {
    const http = toHttpError(error, deps.log);
    send({ type: "error", code: http.code, message: http.message, ...(id ? { id } : {}) });
  };
  /** Takes this socket's one stream slot for the owner; false (and the socket closes) at the cap. */
  const admit = (who: string): boolean => {
    release = deps.streams.acquire(who);
    if (release) return true;
    close(1013, "Too many open streams");
    return false;
  };

  async function authenticate(token: string): Promise<void> {
    if (owner) throw httpErrors.invalid("Cannot authenticate: the socket is authenticated");
    let sub: string;
    try {
      sub = (await deps.auth.verify(token)).sub;
    } catch {
      return close(1008, "Authentication failed");
    }
    if (closed || !admit(sub)) return;
    owner = sub;
    // A bearer token that expires mid-session ends the session.
    const exp = decodeJwt(token).exp;
    if (exp) {
      const ms = Math.min(exp * 1000 - Date.now(), 2 ** 31 - 1);
      expiry = setTimeout(() => close(1008, "Token expired"), Math.max(0, ms));
    }
    send({ type: "authenticated" });
  }

  async function subscribe(who: string, id: string, after: string | undefined): Promise<void> {
    if (scope && scope.jobId !== id) throw httpErrors.notFound();
    if (subs.has(id)) return;
    if (subs.size >= maxSubscriptions) {
      throw httpErrors.rateLimited(1, "Cannot subscribe: too many subscriptions on this socket");
    }
    if (!JOB_ID.test(id)) throw httpErrors.notFound();
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound();
    let ended = false;
    deps.metrics.subscribers.inc({ transport: "ws" });
    const sink = {
      // The notification's JSON is made once per event and spliced in, not re-serialised per socket.
      event: (e: StoredEvent) => {
        if (socket.readyState !== WebSocket.OPEN) return;
        const id = JSON.stringify(e.eventId);
        socket.send(
          `{"type":"notification","event_id":${id},"notification":${notificationJson(e)}}`,
        );
      },
      done: (reason: string) => {
        ended = true;
        subs.delete(id);
        deps.metrics.subscribers.dec({ transport: "ws" });
        if (reason === "gone") fail(httpErrors.notFound("Cannot follow the job: it is gone"), id);
      },
    };
    let sub: Subscription;
    try {
      sub = await relay.subscribe(id, sink, after, { owner: who });
    } catch (error) {
      deps.metrics.subscribers.dec({ transport: "ws" });
      throw error;
    }
    if (closed) return sub.close();
    if (!ended) subs.set(id, sub);
  }

  async function handle(message: Queued): Promise<void> {
    if (message.type === "bad") {
      return fail(httpErrors.invalid("Cannot read the message: bad shape"));
    }
    if (message.type === "auth") return await authenticate(message.token);
    if (message.type === "auth_again") {
      // Only reached when the first auth succeeded (a failed one closes the socket).
      throw httpErrors.invalid("Cannot authenticate: the socket is authenticated");
    }
    if (!owner) return close(1008, "Authentication required");
    if (message.type === "unsubscribe") return subs.get(message.id)?.close();
    try {
      await subscribe(owner, message.id, message.last_event_id);
    } catch (error) {
      fail(error, message.id);
    }
  }

  async function drain(): Promise<void> {
    draining = true;
    while (queue.length > 0 && !closed) {
      try {
        await handle(queue.shift()!);
      } catch (error) {
        fail(error);
      }
    }
    draining = false;
  }

  function receive(data: unknown): void {
    if (closed) return;
    const text = typeof data === "string" ? data : "";
    if (text.length === 0 || text.length > MAX_MESSAGE_BYTES) {
      return close(1009, "Message too large or not text");
    }
    if (queue.length >= maxSubscriptions + MAX_PENDING_EXTRA) {
      return close(1008, "Too many messages waiting");
    }
    let parsed;
    try {
      parsed = wsMessage.safeParse(JSON.parse(text));
    } catch {
      parsed = null;
    }
    let item: Queued = parsed?.success ? parsed.data : { type: "bad" };
    if (item.type === "auth") {
      // Arriving in time is what the deadline asks; the check itself may take longer.
      clearTimeout(deadline);
      if (authSeen || scope) item = { type: "auth_again" };
      authSeen = true;
    }
    queue.push(item);
    if (!draining) void drain();
  }

  socket.onopen = () => {
    if (owner) return void admit(owner);
    deadline = setTimeout(() => close(1008, "Authentication timed out"), AUTH_DEADLINE_MS);
  };
  socket.onmessage = (event) => receive(event.data);
  socket.onerror = () => {};
  socket.onclose = () => {
    closed = true;
    queue.length = 0;
    clearTimeout(deadline);
    clearTimeout(expiry);
    release?.();
    for (const sub of [...subs.values()]) sub.close();
    subs.clear();
  };
}
