/** `GET /v1/ws`: notifications over a WebSocket, several jobs per socket, authenticated by ticket or message. */
import { Hono } from "hono";
import { upgradeWebSocket } from "hono/deno";
import { decodeJwt } from "jose";
import type { WSContext } from "hono/ws";
import type { AppDeps, AppEnv } from "../lib/app.ts";
import { HttpError, httpErrors } from "../lib/errors.ts";
import { JOB_ID } from "../lib/http.ts";
import type { Subscription } from "../lib/relay.ts";
import { wsMessage } from "../lib/schemas.ts";

/** Time a socket has to authenticate. */
export const AUTH_DEADLINE_MS = 5_000;
/** Largest message a client may send. */
export const MAX_MESSAGE_BYTES = 16 * 1024;
/** Subscriptions one socket may hold at once. */
export const MAX_SUBSCRIPTIONS = 100;

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

/** The WebSocket route. */
export function wsRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/v1/ws", async (c, next) => {
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
    if (c.req.header("Upgrade")?.toLowerCase() !== "websocket") {
      throw httpErrors.invalid("Cannot open the socket: a WebSocket upgrade is required");
    }
    const ticket = c.req.query("ticket");
    let scope: { owner: string; jobId: string } | null = null;
    if (ticket) scope = await deps.tickets.verify(ticket);
    c.set("requestId", c.get("requestId"));
    const handler = upgradeWebSocket(() => socketHandlers(deps, scope));
    return handler(c, next);
  });
  return app;
}

function socketHandlers(deps: AppDeps, scope: { owner: string; jobId: string } | null) {
  let owner = scope?.owner ?? null;
  const subs = new Map<string, Subscription>();
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let expiry: ReturnType<typeof setTimeout> | undefined;
  let release: (() => void) | null = null;
  /** Takes this socket's stream slot for the owner; false (and the socket closes) at the cap. */
  const admit = (ws: WSContext, who: string): boolean => {
    release = deps.streams.acquire(who);
    if (release) return true;
    ws.close(1013, "Too many open streams");
    return false;
  };
  const send = (ws: WSContext, message: unknown) => {
    if (ws.readyState === 1) ws.send(JSON.stringify(message));
  };
  const fail = (ws: WSContext, error: unknown) => {
    const http = error instanceof HttpError ? error : httpErrors.unavailable();
    send(ws, { type: "error", code: http.code, message: http.message });
  };
  return {
    onOpen(_event: Event, ws: WSContext) {
      if (owner) return void admit(ws, owner);
      deadline = setTimeout(() => ws.close(1008, "Authentication timed out"), AUTH_DEADLINE_MS);
    },
    async onMessage(event: MessageEvent, ws: WSContext) {
      const text = typeof event.data === "string" ? event.data : "";
      if (text.length === 0 || text.length > MAX_MESSAGE_BYTES) {
        return ws.close(1009, "Message too large or not text");
      }
      let parsed;
      try {
        parsed = wsMessage.safeParse(JSON.parse(text));
      } catch {
        parsed = null;
      }
      if (!parsed?.success) {
        return fail(ws, httpErrors.invalid("Cannot read the message: bad shape"));
      }
      const message = parsed.data;
      try {
        if (message.type === "auth") {
          if (owner) throw httpErrors.invalid("Cannot authenticate: the socket is authenticated");
          const sub = (await deps.auth.verify(message.token)).sub;
          clearTimeout(deadline);
          if (!admit(ws, sub)) return;
          owner = sub;
          // A bearer token that expires mid-session ends the session.
          const exp = decodeJwt(message.token).exp;
          if (exp) {
            const ms = Math.min(exp * 1000 - Date.now(), 2 ** 31 - 1);
            expiry = setTimeout(() => ws.close(1008, "Token expired"), Math.max(0, ms));
          }
          return send(ws, { type: "authenticated" });
        }
        if (!owner) return ws.close(1008, "Authentication required");
        if (message.type === "unsubscribe") {
          subs.get(message.id)?.close();
          return;
        }
        if (scope && scope.jobId !== message.id) throw httpErrors.notFound();
        if (subs.has(message.id)) return;
        if (subs.size >= MAX_SUBSCRIPTIONS) {
          throw httpErrors.rateLimited(
            1,
            "Cannot subscribe: too many subscriptions on this socket",
          );
        }
        if (!JOB_ID.test(message.id)) throw httpErrors.notFound();
        const relay = deps.relay;
        if (!relay) throw httpErrors.notFound();
        const id = message.id;
        let ended = false;
        let dropped = false;
        subs.set(id, { close: () => (dropped = true) });
        deps.metrics.subscribers.inc({ transport: "ws" });
        const sub = await relay.subscribe(
          id,
          {
            event: (e) =>
              send(ws, { type: "notification", event_id: e.eventId, notification: e.notification }),
            done: () => {
              ended = true;
              subs.delete(id);
              deps.metrics.subscribers.dec({ transport: "ws" });
            },
          },
          message.last_event_id,
          { owner },
        ).catch((error) => {
          subs.delete(id);
          deps.metrics.subscribers.dec({ transport: "ws" });
          throw error;
        });
        if (ended) return;
        if (dropped || ws.readyState !== 1) return sub.close();
        subs.set(id, sub);
      } catch (error) {
        if (message.type === "auth") {
          clearTimeout(deadline);
          return ws.close(1008, "Authentication failed");
        }
        fail(ws, error);
      }
    },
    onClose() {
      clearTimeout(deadline);
      clearTimeout(expiry);
      release?.();
      for (const sub of subs.values()) sub.close();
      subs.clear();
    },
  };
}
