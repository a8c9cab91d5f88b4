/**
 * What both SSE routes (one job's events, all of an owner's jobs) do around their subscription: one
 * hub (so one keepalive timer) for every stream of the app, the owner's stream slot, the subscriber
 * gauge, one cleanup when the stream closes, the `retry:` hint on shutdown and the response headers.
 */
import type { Context } from "hono";
import type { EndReason } from "../lib/live/relay.ts";
import { SseHub, type SseStream } from "../lib/live/sse.ts";
import { httpErrors } from "../lib/errors.ts";
import type { AppDeps } from "./deps.ts";

/** How soon a client cut off by a shutdown should come back (sent as `retry:`). */
export const RECONNECT_HINT_MS = 1_000;

/** One open stream of an owner, and what ends it. */
export interface OwnerStream {
  sse: SseStream;
  /** Ends the stream for `reason`; when the server goes away, tells the client to come back. */
  end(reason: EndReason): void;
  /** Frees the slot and the gauge, and closes the subscription, once; runs when the stream closes. */
  release(subscription?: { close(): void }): void;
}

/** Opens owners' SSE streams on one shared hub. */
export class SseStreams {
  #deps: AppDeps;
  #hub: SseHub;

  constructor(deps: AppDeps) {
    this.#deps = deps;
    this.#hub = new SseHub({
      keepaliveMs: deps.config.SSE_KEEPALIVE_MS,
      maxBufferedBytes: deps.config.SSE_MAX_BUFFERED_BYTES,
    });
  }

  /** Takes one of the owner's stream slots (429 when none is free) and opens a stream. */
  open(owner: string): OwnerStream {
    const { streams, metrics } = this.#deps;
    const slot = streams.acquire(owner);
    if (!slot) throw httpErrors.rateLimited(5, "Cannot open the stream: too many open streams");
    const sse = this.#hub.open();
    metrics.subscribers.inc({ transport: "sse" });
    let released = false;
    const end = (reason: EndReason) => {
      if (reason === "closed") sse.raw(`retry: ${RECONNECT_HINT_MS}\n\n`);
      sse.close();
    };
    // A drain ends the stream at once, with the hint to come back (to another process).
    const draining = this.#deps.draining;
    const onDrain = () => end("closed");
    draining?.addEventListener("abort", onDrain, { once: true });
    return {
      sse,
      end,
      release(subscription) {
        subscription?.close();
        if (released) return;
        released = true;
        draining?.removeEventListener("abort", onDrain);
        slot();
        metrics.subscribers.dec({ transport: "sse" });
      },
    };
  }

  /** The streaming response of an open stream. */
  response(c: Context, sse: SseStream): Response {
    return c.body(sse.body, 200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no",
    });
  }
}
