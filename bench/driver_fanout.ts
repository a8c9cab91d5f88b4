/**
 * The fan-out driver: opens many subscriptions (SSE `GET /v1/jobs/:id/events` with a Bearer token, or
 * one WebSocket per subscriber, authenticated by message), prints `{"phase":"connected",…}` once every
 * one has received its replayed `queued` event, records the delivery latency (arrival minus the
 * notification's `at`) of every live event, and on a `stop` line on stdin prints `{"phase":"done",…}`
 * with every sample.
 */
import { readSse } from "./driver_clients.ts";
import { sleep, summarize } from "./stats.ts";

/** Settings of one fan-out driver. */
export interface FanoutConfig {
  mode: "fanout";
  url: string;
  transport: "sse" | "ws";
  /** Subscribers to open: `count` streams on job `jobId`, as the owner of `token`. */
  targets: { jobId: string; token: string; count: number }[];
  /** Subscriptions being opened at once. */
  connectConcurrency: number;
}

interface Target {
  jobId: string;
  token: string;
}

const LIVE = new Set(["started", "succeeded", "failed", "canceled"]);

/** Opens one SSE subscription; `onEvent` gets every event; resolves when the stream ends. */
async function sse(
  url: string,
  target: Target,
  signal: AbortSignal,
  onEvent: (type: string, data: () => { at: string }) => void,
): Promise<void> {
  const response = await fetch(`${url}/v1/jobs/${target.jobId}/events`, {
    headers: { Authorization: `Bearer ${target.token}` },
    signal,
  });
  if (response.status !== 200 || !response.body) {
    await response.body?.cancel();
    throw new Error(`Cannot subscribe: status ${response.status}`);
  }
  await readSse(response.body, (type, data) => onEvent(type, () => JSON.parse(data)));
}

/** Opens one WebSocket, authenticates, subscribes; resolves when it closes. */
function ws(
  url: string,
  target: Target,
  signal: AbortSignal,
  onEvent: (type: string, data: () => { at: string }) => void,
): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const socket = new WebSocket(`${url.replace(/^http/, "ws")}/v1/ws`);
  signal.addEventListener("abort", () => socket.close(), { once: true });
  socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: target.token }));
  socket.onerror = () => reject(new Error("Cannot open the WebSocket"));
  socket.onclose = () => resolve();
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (message.type === "authenticated") {
      socket.send(JSON.stringify({ type: "subscribe", id: target.jobId }));
    } else if (message.type === "notification") {
      onEvent(message.notification.type, () => message.notification);
    } else if (message.type === "error") reject(new Error(`Cannot subscribe: ${message.code}`));
  };
  return promise;
}

/** Runs the fan-out driver until `stop` arrives on stdin. */
export async function runFanout(config: FanoutConfig): Promise<void> {
  const latencies: number[] = [];
  const controller = new AbortController();
  let connected = 0, failed = 0, ended = 0, succeeded = 0;
  let firstAt: number | undefined, lastAt: number | undefined;
  const errors = new Set<string>();
  const queue = config.targets.flatMap((t) => Array.from({ length: t.count }, () => t));
  const open = config.transport === "ws" ? ws : sse;
  const start = performance.now();

  async function subscribe(target: Target): Promise<void> {
    const ready = Promise.withResolvers<void>();
    open(config.url, target, controller.signal, (type, data) => {
      if (type === "queued") ready.resolve();
      else if (LIVE.has(type)) {
        if (type === "succeeded") succeeded++;
        const now = Date.now();
        firstAt ??= now;
        lastAt = now;
        latencies.push(now - Date.parse(data().at));
      }
    }).then(() => ended++, (error) => {
      if (controller.signal.aborted) return;
      failed++;
      if (errors.size < 5) errors.add(String(error));
    }).finally(() => ready.resolve());
    await ready.promise;
  }

  const workers = Array.from({ length: config.connectConcurrency }, async () => {
    for (let target = queue.pop(); target; target = queue.pop()) {
      await subscribe(target);
      connected++;
    }
  });
  await Promise.all(workers);
  const connectMs = Math.round(performance.now() - start);
  console.log(
    JSON.stringify({ phase: "connected", connected: connected - failed, failed, connectMs }),
  );

  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  for await (const chunk of lines) if (chunk.includes("stop")) break;
  await sleep(0);
  console.log(JSON.stringify({
    phase: "done",
    received: latencies.length,
    succeeded,
    ended,
    failed,
    latencyMs: summarize(latencies),
    samples: latencies,
    firstAt,
    lastAt,
    errors: [...errors],
  }));
  controller.abort();
}
