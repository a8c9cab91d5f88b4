/** `GET /v1/jobs/:id/events`: a job's notifications over Server-Sent Events, resumable by event id. */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppDeps, AppEnv } from "../lib/app.ts";
import { httpErrors } from "../lib/errors.ts";
import { authenticateReader, lastEventId, ownedJob } from "../lib/http.ts";
import type { StoredEvent } from "../lib/notifications.ts";

/** Milliseconds a client is told to wait before it reconnects after the server ends a stream early. */
export const RECONNECT_HINT_MS = 1_000;

/** The SSE route. */
export function eventRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/v1/jobs/:id/events", async (c) => {
    const id = c.req.param("id");
    const owner = await authenticateReader(c, deps, id);
    await ownedJob(deps, owner, id);
    const after = lastEventId(c);
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound();
    const release = deps.streams.acquire(owner);
    if (!release) throw httpErrors.rateLimited(5, "Cannot open the stream: too many open streams");
    return streamSSE(c, async (stream) => {
      let chain = Promise.resolve();
      let resolveDone!: (reason: "terminal" | "closed") => void;
      const done = new Promise<"terminal" | "closed">((resolve) => (resolveDone = resolve));
      const write = (event: StoredEvent) => {
        chain = chain.then(() =>
          stream.writeSSE({
            id: event.eventId,
            event: event.notification.type,
            data: JSON.stringify(event.notification),
          })
        ).catch(() => subscription?.close());
      };
      let subscription: { close(): void } | undefined;
      stream.onAbort(() => subscription?.close());
      const keepalive = setInterval(() => {
        chain = chain.then(() => stream.write(": keepalive\n\n")).then(() => {}, () => {});
      }, deps.config.SSE_KEEPALIVE_MS);
      deps.metrics.subscribers.inc({ transport: "sse" });
      try {
        subscription = await relay.subscribe(id, { event: write, done: resolveDone }, after);
        if (stream.aborted) subscription.close();
        const reason = await done;
        await chain;
        if (reason === "closed" && !stream.aborted) {
          // The server is going away: tell the client to come back and resume.
          await stream.write(`retry: ${RECONNECT_HINT_MS}\n\n`).catch(() => {});
        }
      } finally {
        clearInterval(keepalive);
        subscription?.close();
        release();
        deps.metrics.subscribers.dec({ transport: "sse" });
      }
    });
  });
  return app;
}
