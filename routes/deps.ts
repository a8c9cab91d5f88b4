/** What the HTTP layer is built from: its dependencies, its context variables, and its router factory. */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Logger } from "@logtape/logtape";
import type { Auth } from "../lib/auth/jwt.ts";
import type { Tickets } from "../lib/auth/tickets.ts";
import type { Config } from "../lib/config.ts";
import type { JobImages } from "../lib/images/job_images.ts";
import type { StreamSlots } from "../lib/live/stream_slots.ts";
import type { Relay } from "../lib/live/relay.ts";
import type { Metrics } from "../lib/metrics.ts";
import type { Broker } from "../lib/queue/types.ts";
import { rejectInvalid } from "./errors.ts";

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
  /** Told of each job this process ended itself (a cancel), to tell other services; returns at once. */
  onCanceled?: (jobId: string) => void;
  /**
   * Aborts when the process starts to drain (SIGTERM): new requests are answered 503, waits and
   * streams already open are answered and ended before the relay and the broker close.
   */
  draining?: AbortSignal;
  /** The image store, when the image routes answer 302 to its presigned URLs (`IMAGE_STORE_REDIRECT`). */
  images?: JobImages;
}

/** Variables routes set on the request context. */
export type AppEnv = { Variables: { requestId: string } };

/** A router whose failed validations answer the contract's 422 (never raw zod output). */
export function router(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: rejectInvalid });
}

/**
 * Routes that exist only when `value` is set (built from it); otherwise an empty router, typed as the
 * full one so that `hc<AppType>` knows the routes a fully configured process serves.
 */
export function optionalRoutes<V, T extends OpenAPIHono<AppEnv>>(
  value: V | undefined,
  build: (value: V) => T,
): T {
  return value === undefined ? router() as T : build(value);
}
