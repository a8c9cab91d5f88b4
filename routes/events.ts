/** `GET /v1/jobs/{id}/events`: a job's notifications over Server-Sent Events, resumable by event id. */
import { createRoute, z } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { httpErrors } from "../lib/errors.ts";
import { authenticateReader, JOB_ID, lastEventId } from "./http.ts";
import { linkedJson, type StoredEvent } from "../lib/live/notifications.ts";
import type { EndReason } from "../lib/live/relay.ts";
import { SseStreams } from "./sse_streams.ts";
import { errors, SERVER_ERRORS } from "./responses.ts";
import { jobParams, resumeAfter } from "./schemas.ts";

/** Milliseconds a client is told to wait before it reconnects after the server ends a stream early. */

const resume = resumeAfter.openapi({
  description: "Replay every event after this one, then go live (the header wins over the query)",
  example: "3",
});

/** The route definition of `GET /v1/jobs/{id}/events` (validated by its handler, in this order). */
export const eventsRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/events",
  operationId: "streamJobEvents",
  tags: ["live"],
  summary: "A job's notifications as Server-Sent Events",
  description: "Each event: `id:` an event id that increases within the job, `event:` the " +
    "notification's type, `data:` the notification JSON (`#/components/schemas/Notification`). A " +
    "fresh connection replays the job's events from the start; `Last-Event-ID` (or " +
    "`last_event_id`) replays those after it. The stream ends after the terminal event; a comment " +
    "line is sent at least every 15 s while open. Auth: a bearer token, or the job's `ticket`.",
  security: [{ bearer: [] }, { ticket: [] }],
  request: {
    params: jobParams,
    query: z.object({
      last_event_id: resume.optional(),
    }),
    headers: z.object({ "Last-Event-ID": resume.optional() }),
  },
  responses: {
    200: {
      description: "The event stream",
      content: {
        "text/event-stream": {
          schema: z.string().openapi({
            description: "`id:`/`event:`/`data:` blocks; each `data:` is one Notification",
            example: 'id: 1\nevent: queued\ndata: {"id":"fox-1","type":"queued","success":true,' +
              '"at":"2026-11-24T12:00:00.000Z"}\n\n',
          }),
        },
      },
    },
    204: { description: "A reconnect after the job's terminal event: nothing more will come" },
    ...errors({
      400: "Cannot resume: `Last-Event-ID` is not an event id",
      401: "Cannot authenticate: no valid bearer token or ticket",
      404: "Cannot find the job: no such job for this caller, or a ticket for another job",
      429: "Cannot open the stream: too many open streams for this owner",
      ...SERVER_ERRORS,
    }),
  },
});

/** The SSE route; `streams` is shared with the other SSE route (one keepalive timer). */
export function eventRoutes(deps: AppDeps, streams = new SseStreams(deps)) {
  const app = router();
  // A reconnect after the job's terminal event answers 204 (EventSource stops); a job that disappears
  // (expired, or lost with its store) ends the stream. Described, not validated by the framework: the
  // caller is checked before the id and the resume point, and the header's value wins over the query's.
  app.openAPIRegistry.registerPath(eventsRoute);
  app.get("/v1/jobs/:id/events", async (c) => {
    const id = c.req.param("id");
    const owner = await authenticateReader(c, deps, id);
    if (!JOB_ID.test(id)) throw httpErrors.notFound();
    const after = lastEventId(c);
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound();
    const stream = streams.open(owner);
    const { sse } = stream;
    let sent = 0;
    let ended: EndReason | null = null;
    const sink = {
      event: (e: StoredEvent) => {
        sent++;
        sse.event(e.eventId, e.notification.type, linkedJson(e, deps.tickets.current(owner, id)));
      },
      done: (reason: EndReason) => {
        ended = reason;
        stream.end(reason);
      },
    };
    let subscription;
    try {
      // One read replays the log and checks the owner: anyone else's job is a 404 like an unknown one.
      subscription = await relay.subscribe(id, sink, after, { owner });
    } catch (error) {
      sse.close();
      stream.release();
      throw error;
    }
    // Runs once the stream closes, whether the client left or the terminal event ended it.
    void sse.closed.then(() => stream.release(subscription));
    // A reconnect after the terminal event: 204 tells EventSource to stop reconnecting.
    if (after !== undefined && ended === "terminal" && sent === 0) return c.body(null, 204);
    return streams.response(c, sse);
  });
  return app;
}
