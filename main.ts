/**
 * The composition root: loads configuration, builds the live parts (broker, auth, worker, relay, app) with
 * startRuntime(), serves HTTP and handles signals; the only module that starts anything.
 */
import { getLogger, type Logger } from "@logtape/logtape";
import { type AppDeps, createApp } from "./routes/app.ts";
import { type Auth, createAuth } from "./lib/auth/jwt.ts";
import { createTickets } from "./lib/auth/tickets.ts";
import { type Config, ConfigError, loadConfig } from "./lib/config.ts";
import { Relay } from "./lib/live/relay.ts";
import { socketIoCounters } from "./lib/live/seed_notice.ts";
import { SocketIoNotifier } from "./lib/live/socket_io_bridge.ts";
import { StreamSlots } from "./lib/live/stream_slots.ts";
import { configureLogging } from "./lib/logging.ts";
import { createMetrics } from "./lib/metrics.ts";
import {
  createGrokProvider,
  createPlaceholderProvider,
  type ImageProvider,
} from "./lib/provider/grok.ts";
import { createJobImages } from "./lib/images/configured.ts";
import { withImageStore } from "./lib/images/stored_broker.ts";
import { createMemoryBroker } from "./lib/queue/memory.ts";
import { createRedisBroker } from "./lib/queue/redis.ts";
import type { Broker } from "./lib/queue/types.ts";
import { createClusterClient } from "./lib/redis/cluster.ts";
import { createTcpClient } from "./lib/redis/tcp.ts";
import { createUpstashClient } from "./lib/redis/upstash.ts";
import { UpstashSubscription } from "./lib/redis/upstash_subscribe.ts";
import { Wakeups } from "./lib/live/wakeups.ts";
import { wakeChannels } from "./lib/queue/wake_scripts.ts";
import { WebhookDispatcher } from "./lib/webhooks/dispatcher.ts";
import { ImageWorker } from "./workers/image_worker.ts";

/** The running parts of one process. */
export interface Runtime {
  app: ReturnType<typeof createApp>;
  deps: AppDeps;
  worker: ImageWorker | null;
  relay: Relay | null;
  /** Push wake-ups and their safety poll (Upstash), else null. */
  wakeups: Wakeups | null;
  /** A ready-to-use token in DEV_MODE with the random dev secret (no key configured), else null. */
  devToken: string | null;
  /**
   * Starts draining: new requests are answered 503, waits and streams end now, the worker stops
   * claiming; the relay and the broker stay open for the requests already inside (see close).
   */
  drain(): void;
  /** Stops taking work, drains, ends streams and closes connections; idempotent. */
  close(options?: { drainMs?: number }): Promise<void>;
}

/** Test seams: a provider to use instead of the configured one. */
export interface RuntimeOverrides {
  provider?: ImageProvider;
  workerOptions?: { backoffBaseMs?: number; backoffMaxMs?: number; blockMs?: number };
  /** Longest time between the wake-ups' safety polls (Upstash); 120 s by default. */
  safetyMs?: number;
}

function connect(config: Config, log: Logger): Broker {
  const prefix = config.REDIS_PREFIX;
  const ttlSec = config.JOB_TTL_SECONDS;
  const partitions = config.JOB_PARTITIONS;
  const onError = (error: Error) =>
    log.warn("Redis connection error: {error}", { error: error.message });
  // The placeholder generator is never paced; xAI is, by every process together.
  const pace = config.XAI_API_KEY ? config.GROK_MAX_RPS : null;
  const shared = {
    prefix,
    ttlSec,
    partitions,
    pace,
    // Redis refuses to store an image bigger than any the provider client accepts.
    maxImageBytes: config.DOWNLOAD_MAX_BYTES,
    // With the Socket.IO bridge on, each job end this process writes leaves a notice in the outbox.
    notices: config.socketIoUrl !== undefined,
    onError: (what: string, error: unknown) =>
      log.error("Cannot {what}: {error}", { what, error: String(error) }),
  };
  if (config.broker === "cluster") {
    const client = createClusterClient({ urls: config.REDIS_CLUSTER_URLS!, onError });
    return createRedisBroker(client, { ...shared, kind: "redis", cluster: true });
  }
  if (config.broker === "redis") {
    const client = createTcpClient({ url: config.REDIS_URL!, onError });
    return createRedisBroker(client, { ...shared, kind: "redis" });
  }
  if (config.broker === "upstash") {
    const client = createUpstashClient({
      url: config.UPSTASH_REDIS_REST_URL!,
      token: config.UPSTASH_REDIS_REST_TOKEN!,
    });
    const wakeups = config.UPSTASH_PUSH === "1";
    return createRedisBroker(client, { ...shared, kind: "upstash", wakeups });
  }
  return createMemoryBroker({ ttlSec, pace, notices: shared.notices });
}

async function retrying<T>(what: string, log: Logger, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= 30 || error instanceof ConfigError) throw error;
      log.warn("Cannot {what} yet (attempt {attempt}): {error}", {
        what,
        attempt,
        error: String(error),
      });
      await new Promise((resolve) => setTimeout(resolve, Math.min(200 * attempt, 2_000)));
    }
  }
}

/** Over Upstash, one subscription to the deployment's wake-ups, and their safety poll. */
function makeWakeups(
  config: Config,
  broker: Broker,
  log: Logger,
  safetyMs?: number,
): Wakeups | null {
  if (config.broker !== "upstash" || config.UPSTASH_PUSH !== "1") return null;
  return new Wakeups({
    broker,
    log,
    leaseMs: config.JOB_LEASE_MS,
    safetyMs,
    subscribe: ({ onMessage, onOpen }) =>
      new UpstashSubscription({
        url: config.UPSTASH_REDIS_REST_URL!,
        token: config.UPSTASH_REDIS_REST_TOKEN!,
        // A worker-only process hears work and cancels only; one with a relay hears everything.
        channel: wakeChannels(config.REDIS_PREFIX)[config.ROLE === "worker" ? "work" : "all"],
        onMessage,
        onOpen,
        onDrop: (reason) => log.info("Wake-ups dropped ({reason}); reopening", { reason }),
      }),
  });
}

function makeProvider(config: Config, log: Logger): ImageProvider {
  if (!config.XAI_API_KEY) {
    log.warn("XAI_API_KEY is not set: using the built-in placeholder image generator");
    return createPlaceholderProvider();
  }
  return createGrokProvider({
    apiBase: config.GROK_API,
    apiKey: config.XAI_API_KEY,
    model: config.GROK_MODEL,
    responseFormat: config.GROK_RESPONSE_FORMAT,
    imageHosts: config.IMAGE_HOSTS,
    timeoutMs: config.PROVIDER_TIMEOUT_MS,
    maxBytes: config.DOWNLOAD_MAX_BYTES,
  });
}

/**
 * The verifier. Dev tokens exist only with the process's own random secret (DEV_MODE with no key
 * configured): with a real key configured, nothing here ever signs with it.
 */
async function makeAuth(config: Config, log: Logger): Promise<Auth> {
  const configured = Boolean(config.JWT_SECRET || config.JWT_PUBLIC_KEY || config.JWT_JWKS_URL);
  let secret = config.JWT_SECRET;
  if (!configured && config.devMode) {
    secret = crypto.getRandomValues(new Uint8Array(32)).toBase64({ alphabet: "base64url" });
    log.warn("DEV_MODE: no JWT key configured, using a random HS256 secret for this process");
  } else if (config.devMode) {
    log.warn(
      "DEV_MODE: a JWT key is configured, so dev tokens are off (POST /v1/dev/token is 404)",
    );
  }
  const auth = await createAuth({
    secret,
    publicKey: config.JWT_PUBLIC_KEY,
    jwksUrl: config.JWT_JWKS_URL,
    algorithms: config.JWT_ALGORITHMS,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
  });
  // Only the random dev secret may sign; a configured key is for verifying alone.
  return configured || !config.devMode ? { verify: auth.verify } : auth;
}

/** Builds every part the configuration asks for and starts the worker and relay. */
export async function startRuntime(
  config: Config,
  log: Logger,
  overrides: RuntimeOverrides = {},
): Promise<Runtime> {
  const images = createJobImages(config);
  const broker = images ? withImageStore(connect(config, log), images) : connect(config, log);
  if (images) log.info("Images are kept in the {kind} image store", { kind: images.store.kind });
  if (config.broker === "memory") {
    log.warn(
      "No REDIS_URL, REDIS_CLUSTER_URLS or UPSTASH_REDIS_REST_URL: using the embedded in-memory broker (one process, nothing durable)",
    );
  }
  try {
    await retrying("initialise the broker", log, () => broker.init());
  } catch (error) {
    await broker.close(); // refused (JOB_PARTITIONS changed) or unreachable: nothing else started
    throw error;
  }
  const evicting = await broker.evictionPolicy?.();
  if (evicting) {
    log.error(
      "Redis maxmemory-policy is {policy}: under memory pressure Redis may evict queued jobs, " +
        "events and leases, and jobs are then lost; set maxmemory-policy noeviction",
      { policy: evicting },
    );
  }
  const secret = await retrying(
    "read the ticket secret",
    log,
    () => broker.sharedSecret("tickets"),
  );
  const auth = await makeAuth(config, log);
  const tickets = await createTickets({ secret });
  let worker: ImageWorker | null = null;
  let webhooks: WebhookDispatcher | null = null;
  const metrics = createMetrics({ inflight: () => worker?.active ?? 0 });
  const safetyMs = overrides.safetyMs ?? config.UPSTASH_SAFETY_POLL_MS;
  const wakeups = makeWakeups(config, broker, log, safetyMs);
  wakeups?.start();
  // The seed's front ends hear of every job's end through its Socket.IO service, when one is
  // configured: at least once, from the broker's outbox of notices.
  const notices = broker.notices;
  const socketIo = config.socketIoUrl && notices
    ? new SocketIoNotifier({
      url: config.socketIoUrl,
      event: config.NOTIFY_SOCKET_IO_EVENT,
      log,
      broker: { notices, events: (id) => broker.events(id) },
      leaseMs: config.NOTIFY_SOCKET_IO_LEASE_MS,
      maxAgeMs: config.JOB_TTL_SECONDS * 1000,
      wakeups: wakeups ?? undefined,
      ...socketIoCounters(metrics.registry),
    })
    : null;
  socketIo?.start();
  // Pushed, the relay's resync (a safety net for a feed item it never saw) runs as seldom as the
  // safety poll: each one reads every watched job's log, a billed command each over Upstash.
  const relay = config.ROLE === "worker" ? null : new Relay({
    broker,
    log,
    wakeups: wakeups ?? undefined,
    resyncMs: wakeups ? 120_000 : undefined,
  });
  if (relay) await relay.start();
  const streams = new StreamSlots(config.MAX_STREAMS_PER_OWNER);
  const drain = new AbortController();
  const deps: AppDeps = {
    config,
    broker,
    auth,
    tickets,
    relay,
    log,
    metrics,
    streams,
    draining: drain.signal,
    images: images && config.IMAGE_STORE_REDIRECT === "1" ? images : undefined,
  };
  // A cancel ends its job in the API process that took it: that process sends its notice at once.
  if (socketIo) deps.onCanceled = () => socketIo.nudge();
  // Webhook deliveries go out from every process that has the secret, whatever its role: one that
  // accepts a submit's webhook (ROLE=api included) also delivers it (the outbox is in the broker).
  if (config.WEBHOOK_SECRET) {
    webhooks = new WebhookDispatcher({
      broker,
      secret: config.WEBHOOK_SECRET,
      allowedHosts: config.WEBHOOK_HOSTS,
      log,
      metrics,
      wakeups: wakeups ?? undefined,
      tickets,
    });
    webhooks.start();
  }
  const dispatcher = webhooks;
  if (config.ROLE !== "api") {
    worker = new ImageWorker({
      broker,
      provider: overrides.provider ?? makeProvider(config, log),
      verifyToken: (token) => auth.verify(token),
      log,
      concurrency: config.WORKER_CONCURRENCY,
      leaseMs: config.JOB_LEASE_MS,
      maxAttempts: config.JOB_MAX_ATTEMPTS,
      backoffBaseMs: config.JOB_BACKOFF_BASE_MS,
      backoffMaxMs: config.JOB_BACKOFF_MAX_MS,
      onTerminal: socketIo ? () => socketIo.nudge() : undefined,
      onProvider: (outcome, costUsd) => {
        metrics.providerRequests.inc({ outcome });
        if (costUsd > 0) metrics.providerCost.inc(costUsd);
      },
      onPace: (pace) => metrics.providerPace.set(pace ?? -1),
      images: images ?? undefined,
      wakeups: wakeups ?? undefined,
      onFinished: (status) => {
        metrics.finished.inc({ status });
        dispatcher?.nudge(); // a terminal event may have queued a delivery: send it now
      },
      ...overrides.workerOptions,
    });
    worker.start();
    const started = worker;
    deps.nudge = () => started.nudge();
    // With a relay in this process, a cancel stops the provider call at once instead of at the next lease renewal.
    relay?.watch((item) => {
      if (item.notification.type === "canceled") {
        started.abortJob(item.jobId);
        dispatcher?.nudge();
      }
    });
  }
  const devToken = config.devMode && auth.sign ? await auth.sign("dev-user", 86_400) : null;
  let closing: Promise<void> | null = null;
  return {
    app: createApp(deps),
    deps,
    worker,
    relay,
    wakeups,
    devToken,
    drain() {
      drain.abort();
      void worker?.close({ drainMs: config.DRAIN_TIMEOUT_MS });
    },
    close({ drainMs = config.DRAIN_TIMEOUT_MS } = {}) {
      closing ??= (async () => {
        drain.abort();
        await Promise.allSettled([worker?.close({ drainMs }), relay?.close(), webhooks?.close()]);
        await wakeups?.close();
        await socketIo?.close(); // after the drain: the jobs that ended in it are emitted
        await broker.close();
      })();
      return closing;
    },
  };
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
  await configureLogging({ level: config.LOG_LEVEL, pretty: config.devMode });
  const log = getLogger(["imagejobs"]);
  let runtime: Runtime;
  try {
    runtime = await startRuntime(config, log);
  } catch (error) {
    started.reject(error);
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message); // e.g. JOB_PARTITIONS differs from the one the jobs are laid out for
    Deno.exit(1);
  }
  const server = Deno.serve({
    port: config.PORT,
    hostname: config.HOST,
    onListen: ({ hostname, port }) => {
      const line =
        `Listening on http://${hostname}:${port} (role ${config.ROLE}, broker ${config.broker})`;
      // Always printed, as Deno.serve does by default: with PORT=0 it is how you learn the port.
      if (log.isEnabledFor("info")) log.info(line);
      else console.log(line);
      if (runtime.devToken) {
        // Printed outside the logger on purpose: logs redact tokens, and this one is for you to copy.
        console.log(`DEV_MODE token (sub dev-user, 24 h):\n${runtime.devToken}`);
      }
    },
  }, runtime.app.fetch);

  started.resolve(runtime);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("{signal}: draining for up to {ms} ms", { signal, ms: config.DRAIN_TIMEOUT_MS });
    const hardStop = setTimeout(() => Deno.exit(0), config.DRAIN_TIMEOUT_MS + 3_000);
    // First nothing new (503), then every request already inside is answered (waits and streams
    // end at once), and only then do the relay and the broker close under the drained worker.
    runtime.drain();
    await server.shutdown();
    await runtime.close();
    clearTimeout(hardStop);
    log.info("Stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
}

/** The runtime that main() starts, for the cron's sweep. */
const started = Promise.withResolvers<Runtime>();
started.promise.catch(() => {});

/**
 * The sweep Deno.cron runs (Deno Deploy): over Upstash one script call (the safety poll), followed by
 * work only when it finds some; elsewhere the worker's own sweep.
 */
export async function sweepOnce(runtime: Runtime): Promise<void> {
  if (runtime.wakeups) await runtime.wakeups.probe();
  else await runtime.worker?.maintain({ sweep: true });
}

// On Deno Deploy a cron keeps leases and retries moving while no request keeps an instance up. Deploy
// reads Deno.cron definitions from the entry module's top level, before the server starts.
if (import.meta.main && typeof Deno.cron === "function") {
  Deno.cron(
    "sweep stalled leases and due retries",
    "*/10 * * * *",
    async () => await sweepOnce(await started.promise),
  );
}

if (import.meta.main) await main();
