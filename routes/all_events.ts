/** `GET /v1/events`: every notification of every job the caller owns, over Server-Sent Events. */
import { createRoute, z } from "@hono/zod-openapi";
import { type AppDeps, router } from "./deps.ts";
import { httpErrors } from "../lib/errors.ts";
import { linkedJson } from "../lib/live/notifications.ts";
import type { EndReason, OwnerSubscriber } from "../lib/live/relay.ts";
import { SseStreams } from "./sse_streams.ts";
import { authenticate } from "./http.ts";
import { errors, SERVER_ERRORS } from "./responses.ts";

/** Longest resume cursor read; a longer one cannot be ours and answers `event: reset`. */
export const MAX_CURSOR_LENGTH = 1024;

/** The event a stream starts with when it cannot resume from the given cursor. */
export const RESET_EVENT = 'event: reset\ndata: {"type":"reset"}\n\n';

const cursor = z.string().openapi({
  description: "The `id:` of the last event received: replay what came after it, then go live",
});

/** The route definition of `GET /v1/events` (validated by its handler). */
export const allEventsRoute = createRoute({
  method: "get",
  path: "/v1/events",
  operationId: "streamAllEvents",
  tags: ["live"],
  summary: "Every notification of every job of the caller, as Server-Sent Events",
  description: "From the time of connecting, every notification of every job the caller owns: " +
    "`id:` an opaque cursor, `event:` the notification's type, `data:` the notification JSON " +
    "(`#/components/schemas/Notification`). Reconnecting with `Last-Event-ID` (or " +
    "`last_event_id`) replays what was missed within the retention window (at least 10 minutes); " +
    "when that is no longer possible the first event is `event: reset` (`data: " +
    '{"type":"reset"}`): re-read the jobs with `GET /v1/jobs`. A comment line is sent at least ' +
    "every 15 s. Bearer auth only.",
  security: [{ bearer: [] }],
  request: {
    query: z.object({ last_event_id: cursor.optional() }),
    headers: z.object({ "Last-Event-ID": cursor.optional() }),
  },
  responses: {
    200: {
      description: "The event stream",
      content: {
        "text/event-stream": {
          schema: z.string().openapi({
            description: "`id:`/`event:`/`data:` blocks; each `data:` is one Notification",
            example: 'id: 1700000000000-0\nevent: queued\ndata: {"id":"fox-1","type":"queued",' +
              '"success":true,"at":"2026-11-24T12:00:00.000Z"}\n\n',
          }),
        },
      },
    },
    ...errors({
      401: "Cannot authenticate: no valid bearer token",
      429: "Cannot open the stream: too many open streams for this owner",
      ...SERVER_ERRORS,
    }),
  },
});

/** The stream of all of an owner's jobs. */
export function allEventRoutes(deps: AppDeps, streams = new SseStreams(deps)) {
  const app = router();
  app.openAPIRegistry.registerPath(allEventsRoute);
  app.get("/v1/events", async (c) => {
    const owner = await authenticate(c, deps);
    const relay = deps.relay;
    if (!relay) throw httpErrors.notFound("Cannot find the route: no such path");
    const after = c.req.header("Last-Event-ID") || c.req.query("last_event_id") || undefined;
    const stream = streams.open(owner);
    const { sse } = stream;
    const subscriber: OwnerSubscriber = {
      event: ({ cursor, event }) => {
        const ticket = deps.tickets.current(owner, event.notification.id);
        sse.event(cursor, event.notification.type, linkedJson(event, ticket));
      },
      reset: () => sse.raw(RESET_EVENT),
      drain: () => sse.drain(),
      done: (reason: EndReason) => stream.end(reason),
    };
    const unusable = after !== undefined &&
      (after.length > MAX_CURSOR_LENGTH || /[\r\n]/.test(after));
    if (unusable) subscriber.reset!();
    const subscription = relay.subscribeOwner(owner, subscriber, unusable ? undefined : after);
    void sse.closed.then(() => stream.release(subscription));
    return streams.response(c, sse);
  });
  return app;
}
