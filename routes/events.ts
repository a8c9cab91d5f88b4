/**
 * `GET /v1/jobs/:id/events`: a job's notifications over Server-Sent Events, resumable by event id. A
 * reconnect after the job's terminal event answers 204 (EventSource stops); a job that disappears (expired,
 * or lost with its store) ends the stream.
 */
import { Hono } from "hono";
import type { AppDeps, AppEnv } from "./app.ts";
import { httpErrors } from "../lib/errors.ts";
import { authenticateReader, JOB_ID, lastEventId } from "./http.ts";
import type { StoredEvent } from "../lib/live/notifications.ts";
import type { EndReason } from "../lib/live/relay.ts";
import { SseHub } from "../lib/live/sse.ts";

/** Milliseconds a client is told to wait before it reconnects after the server ends a stream early. */
export const RECONNECT_HINT_MS = 1_000;

/** The SSE route. */
export function eventRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const hub = new SseHub({
    keepaliveMs: deps.config.SSE_KEEPALIVE_MS,
    maxBufferedBytes: deps.config.SSE_MAX_BUFFERED_BYTES,
  });
  app.get("/v1/jobs/:id/events", async (c) => {
    const id = c.req.param("id");
    const owner = await authenticateReader(c, deps, id);
    if (!JOB_ID.test(id)) throw httpErrors.notFound();
    const after = lastEventId(c);
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound();
    const release = deps.streams.acquire(owner);
    if (!release) throw httpErrors.rateLimited(5, "Cannot open the stream: too many open streams");
    const sse = hub.open();
    deps.metrics.subscribers.inc({ transport: "sse" });
    const cleanup = (subscription?: { close(): void }) => {
      subscription?.close();
      release();
      deps.metrics.subscribers.dec({ transport: "sse" });
    };
    let sent = 0;
    let ended: EndReason | null = null;
    const sink = {
      event: (e: StoredEvent) => {
        sent++;
        sse.event(e.eventId, e.notification.type, JSON.stringify(e.notification));
      },
      done: (reason: EndReason) => {
        ended = reason;
        // The server is going away: tell the client to come back and resume.
        if (reason === "closed") sse.raw(`retry: ${RECONNECT_HINT_MS}\n\n`);
        sse.close();
      },
    };
    let subscription;
    try {
      // One read replays the log and checks the owner: anyone else's job is a 404 like an unknown one.
      subscription = await relay.subscribe(id, sink, after, { owner });
    } catch (error) {
      sse.close();
      cleanup();
      throw error;
    }
    // Runs once the stream closes, whether the client left or the terminal event ended it.
    void sse.closed.then(() => cleanup(subscription));
    // A reconnect after the terminal event: 204 tells EventSource to stop reconnecting.
    if (after !== undefined && ended === "terminal" && sent === 0) return c.body(null, 204);
    return c.body(sse.body, 200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no",
    });
  });
  return app;
}
