/** Prometheus metrics of one process, on its own registry. */
import type { MiddlewareHandler } from "hono";
import { prometheus } from "@hono/prometheus";
import { Counter, Gauge, Registry } from "prom-client";

/** The metrics a process exposes at `/metrics`, and the HTTP middleware that records requests. */
export interface Metrics {
  registry: Registry;
  middleware: MiddlewareHandler;
  submitted: Counter<"result">;
  finished: Counter<"status">;
  subscribers: Gauge<"transport">;
  inflight: Gauge;
  /** Webhook delivery attempts by outcome: delivered, retried, gone, gave_up, refused. */
  webhookDeliveries: Counter<"outcome">;
  /** Webhook deliveries dropped unsent, by reason: owner_backlog (over the per-owner bound), expired. */
  webhookDropped: Counter<"reason">;
  /** Provider requests by outcome: succeeded, rate_limited, retryable, failed. */
  providerRequests: Counter<"outcome">;
  /** What the provider said its answers cost, in USD. */
  providerCost: Counter;
  /** The deployment's provider pace in requests/s as this process last saw it (-1: unpaced). */
  providerPace: Gauge;
}

/** Creates a fresh registry with the service's metrics; `inflight` reads the worker's running jobs. */
export function createMetrics({ inflight = () => 0 }: { inflight?: () => number } = {}): Metrics {
  const registry = new Registry();
  const { registerMetrics } = prometheus({ registry });
  const submitted = new Counter({
    name: "jobs_submitted_total",
    help: "Job submissions by result (created, existing)",
    labelNames: ["result"],
    registers: [registry],
  });
  const finished = new Counter({
    name: "jobs_finished_total",
    help: "Jobs finished by this process's worker, by status",
    labelNames: ["status"],
    registers: [registry],
  });
  const subscribers = new Gauge({
    name: "event_subscribers",
    help: "Open SSE and WebSocket subscriptions in this process",
    labelNames: ["transport"],
    registers: [registry],
  });
  const webhookDeliveries = new Counter({
    name: "webhook_deliveries_total",
    help: "Webhook delivery attempts by outcome (delivered, retried, gone, gave_up, refused)",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const webhookDropped = new Counter({
    name: "webhook_deliveries_dropped_total",
    help: "Webhook deliveries dropped unsent, by reason (owner_backlog, expired)",
    labelNames: ["reason"],
    registers: [registry],
  });
  const providerRequests = new Counter({
    name: "provider_requests_total",
    help: "Provider requests by outcome (succeeded, rate_limited, retryable, failed)",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const providerCost = new Counter({
    name: "provider_cost_usd_total",
    help: "What the provider said its answers cost, in USD",
    registers: [registry],
  });
  const providerPace = new Gauge({
    name: "provider_pace_rps",
    help: "The deployment's provider pace in requests/s as this process last saw it (-1: unpaced)",
    registers: [registry],
  });
  const inflightGauge = new Gauge({
    name: "worker_jobs_in_flight",
    help: "Jobs this process's worker is running now",
    registers: [registry],
    collect() {
      this.set(inflight());
    },
  });
  return {
    registry,
    middleware: registerMetrics,
    submitted,
    finished,
    subscribers,
    inflight: inflightGauge,
    webhookDeliveries,
    webhookDropped,
    providerRequests,
    providerCost,
    providerPace,
  };
}
