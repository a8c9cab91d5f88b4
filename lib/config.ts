/** Parses the process environment into a typed, validated configuration, once, at startup. */
import { z } from "zod";
import { parseStoreUrl } from "./images/store.ts";
import { MAX_PARTITIONS } from "./queue/partitions.ts";

/** Raised when the environment cannot form a valid configuration; the message names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const csv = z.string().transform((s) =>
  s.split(",").map((part) => part.trim()).filter((part) => part.length > 0)
);

function isBase64Secret(value: string): boolean {
  try {
    return Uint8Array.fromBase64(value.slice("whsec_".length)).byteLength >= 16;
  } catch {
    return false;
  }
}

function int(min: number, max: number, fallback: number) {
  return z.coerce.number().int().min(min).max(max).default(fallback);
}

const optionalString = z.string().trim().min(1).optional();

const hostPort = z.string().regex(
  /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/,
  "must be host[:port]",
);

const clusterSeed = z.string().regex(
  /^redis:\/\/(?:[^@/\s]*@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}\/?$/,
  "must be comma-separated redis://[:password@]host:port",
);

const ALGORITHMS = [
  "HS256",
  "HS384",
  "HS512",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;

const envSchema = z.object({
  PORT: int(0, 65535, 8000),
  HOST: z.string().min(1).default("0.0.0.0"),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, "must start with redis:// or rediss://").optional(),
  REDIS_CLUSTER_URLS: csv.pipe(z.array(clusterSeed).min(1, "must name at least one node"))
    .optional(),
  JOB_PARTITIONS: int(1, MAX_PARTITIONS, 1),
  UPSTASH_REDIS_REST_URL: z.url({ protocol: /^https?$/ }).optional(),
  UPSTASH_REDIS_REST_TOKEN: optionalString,
  /** Over Upstash: "1" push wake-ups (a subscription, scripts publish), "0" poll as before v1.2. */
  UPSTASH_PUSH: z.enum(["0", "1"]).default("1"),
  /**
   * Over Upstash with push: the longest time between safety polls (one command each), which also find
   * entries other services add to the jobs stream without a wake-up.
   */
  UPSTASH_SAFETY_POLL_MS: int(100, 3_600_000, 120_000),
  REDIS_PREFIX: z.string().max(64).default("img:"),
  ROLE: z.enum(["api", "worker", "all"]).default("all"),
  WORKER_CONCURRENCY: int(1, 4096, 8),
  GROK_API: z.url({ protocol: /^https?$/ }).default("https://api.x.ai/v1"),
  XAI_API_KEY: optionalString,
  GROK_MODEL: z.string().min(1).default("grok-imagine-image"),
  GROK_RESPONSE_FORMAT: z.enum(["b64_json", "url"]).default("b64_json"),
  IMAGE_HOSTS: csv.pipe(z.array(hostPort)).default(["imgen.x.ai"]),
  JWT_SECRET: optionalString,
  JWT_PUBLIC_KEY: optionalString,
  JWT_JWKS_URL: z.url({ protocol: /^https?$/ }).optional(),
  JWT_ALGORITHMS: csv.pipe(z.array(z.enum(ALGORITHMS)).min(1)).optional(),
  JWT_ISSUER: optionalString,
  JWT_AUDIENCE: optionalString,
  JOB_LEASE_MS: int(1000, 3_600_000, 30_000),
  JOB_MAX_ATTEMPTS: int(1, 100, 5),
  JOB_BACKOFF_BASE_MS: int(1, 600_000, 1_000),
  JOB_BACKOFF_MAX_MS: int(1, 3_600_000, 60_000),
  JOB_TTL_SECONDS: int(60, 90 * 86_400, 86_400),
  RATE_LIMIT_PER_MINUTE: int(0, 1_000_000, 60),
  MAX_ACTIVE_JOBS_PER_OWNER: int(0, 1_000_000, 100),
  MAX_QUEUE_LENGTH: int(0, 100_000_000, 100_000),
  MAX_STREAMS_PER_OWNER: int(0, 100_000, 32),
  /** Provider requests/s of the whole deployment (0: learned from the provider's 429s). */
  GROK_MAX_RPS: z.coerce.number().min(0).max(100_000).default(5),
  /** Images one owner may ask for per UTC day (0: no cap). */
  MAX_IMAGES_PER_OWNER_PER_DAY: int(0, 100_000_000, 0),
  CORS_ORIGINS: csv.optional(),
  DEV_MODE: z.string().optional(),
  PROVIDER_TIMEOUT_MS: int(1000, 600_000, 120_000),
  DOWNLOAD_MAX_BYTES: int(1024, 64 * 1024 * 1024, 20 * 1024 * 1024),
  DRAIN_TIMEOUT_MS: int(0, 600_000, 10_000),
  SSE_KEEPALIVE_MS: int(100, 15_000, 15_000),
  SSE_MAX_BUFFERED_BYTES: int(256, 64 * 1024 * 1024, 1024 * 1024),
  WS_MAX_SUBSCRIPTIONS: int(1, 100_000, 1000),
  LOG_LEVEL: z.enum(["debug", "info", "warning", "error"]).default("info"),
  WEBHOOK_SECRET: z.string().regex(/^whsec_[A-Za-z0-9+/=]{8,}$/, "must be whsec_<base64>")
    .refine(isBase64Secret, "must be whsec_ followed by valid base64 of at least 16 bytes")
    .optional(),
  WEBHOOK_HOSTS: csv.pipe(z.array(hostPort)).default([]),
  NOTIFY_SOCKET_IO_URL: z.url({ protocol: /^https?$/ }).optional(),
  NOTIFY_SOCKET_IO_EVENT: z.string().trim().min(1).max(200).default("notify"),
  /** How long a Socket.IO notice emitted but not yet confirmed stays with its process (then re-emitted). */
  NOTIFY_SOCKET_IO_LEASE_MS: int(1000, 3_600_000, 120_000),
  PORT_MESSAGES_USERS: z.coerce.number().int().min(1).max(65535).optional(),
  IMAGE_STORE_URL: z.string().refine(
    (url) => parseStoreUrl(url) !== null,
    "must be s3://<bucket>[/<prefix>] (or memory:// for one process)",
  ).optional(),
  S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  S3_REGION: z.string().regex(/^[a-z0-9-]{1,32}$/, "must be a region name or auto").default("auto"),
  AWS_ACCESS_KEY_ID: optionalString,
  AWS_SECRET_ACCESS_KEY: optionalString,
  /** With an image store: "1" answers the image routes with 302 to a presigned URL, "0" serves bytes. */
  IMAGE_STORE_REDIRECT: z.enum(["0", "1"]).default("0"),
  /** Deadline of one image store request; a slower store fails the request (the job retries). */
  IMAGE_STORE_TIMEOUT_MS: int(100, 600_000, 10_000),
});

/** The service's configuration after validation. */
export type Config = z.infer<typeof envSchema> & {
  /** Which broker backs the queue. */
  broker: "redis" | "cluster" | "upstash" | "memory";
  /** True only when DEV_MODE=1. */
  devMode: boolean;
  /** The seed's Socket.IO notification service: NOTIFY_SOCKET_IO_URL, else from PORT_MESSAGES_USERS. */
  socketIoUrl: string | undefined;
};

/** Builds the configuration from an environment map, throwing ConfigError that names the bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const cleaned = Object.fromEntries(
    Object.entries(env).filter(([key, value]) => key in envSchema.shape && value !== ""),
  );
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) =>
      `${issue.path.join(".") || "environment"}: ${issue.message}`
    );
    throw new ConfigError(`Cannot start: invalid configuration\n  ${lines.join("\n  ")}`);
  }
  const values = parsed.data;
  const devMode = values.DEV_MODE === "1";
  const hasUrl = values.UPSTASH_REDIS_REST_URL !== undefined;
  const hasToken = values.UPSTASH_REDIS_REST_TOKEN !== undefined;
  if (hasUrl !== hasToken) {
    throw new ConfigError(
      "Cannot start: UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together",
    );
  }
  if (values.REDIS_URL && hasUrl) {
    throw new ConfigError(
      "Cannot start: set either REDIS_URL or UPSTASH_REDIS_REST_URL, not both",
    );
  }
  const hasCluster = values.REDIS_CLUSTER_URLS !== undefined;
  if (hasCluster && (values.REDIS_URL || hasUrl)) {
    throw new ConfigError(
      "Cannot start: set only one of REDIS_CLUSTER_URLS, REDIS_URL and UPSTASH_REDIS_REST_URL",
    );
  }
  if (hasCluster && /[{}]/.test(values.REDIS_PREFIX)) {
    throw new ConfigError(
      "Cannot start: REDIS_PREFIX may not hold { or } with REDIS_CLUSTER_URLS (the partitions' hash tags follow it)",
    );
  }
  const keys = [values.JWT_SECRET, values.JWT_PUBLIC_KEY, values.JWT_JWKS_URL].filter(Boolean);
  if (keys.length > 1) {
    throw new ConfigError(
      "Cannot start: set only one of JWT_SECRET, JWT_PUBLIC_KEY and JWT_JWKS_URL",
    );
  }
  if (keys.length === 0 && !devMode) {
    throw new ConfigError(
      "Cannot start: no JWT key is configured; set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL",
    );
  }
  const broker = hasCluster
    ? "cluster"
    : values.REDIS_URL
    ? "redis"
    : hasUrl
    ? "upstash"
    : "memory";
  if (broker === "memory" && values.ROLE !== "all") {
    throw new ConfigError(
      "Cannot start: ROLE must be all with the embedded broker; set REDIS_URL or REDIS_CLUSTER_URLS to split roles",
    );
  }
  checkImageStore(values, broker);
  if (broker === "upstash") applyUpstashLimits(values, cleaned);
  if (env.DENO_DEPLOYMENT_ID && cleaned.DRAIN_TIMEOUT_MS === undefined) {
    values.DRAIN_TIMEOUT_MS = DEPLOY_DRAIN_MS; // Deno Deploy sends SIGKILL 5 s after SIGINT
  }
  const socketIoUrl = values.NOTIFY_SOCKET_IO_URL ??
    (values.PORT_MESSAGES_USERS ? `http://127.0.0.1:${values.PORT_MESSAGES_USERS}` : undefined);
  return { ...values, broker, devMode, socketIoUrl };
}

/** Largest image over Upstash: its base64 must stay well under the 10 MB request limit. */
export const UPSTASH_MAX_IMAGE_BYTES = 7 * 1024 * 1024;
const UPSTASH_DEFAULT_IMAGE_BYTES = 5 * 1024 * 1024;
const DEPLOY_DRAIN_MS = 4_000;

/** An s3:// store needs its keys; the in-memory one only works in the one process of the embedded broker. */
function checkImageStore(values: z.infer<typeof envSchema>, broker: Config["broker"]): void {
  const location = values.IMAGE_STORE_URL ? parseStoreUrl(values.IMAGE_STORE_URL) : null;
  if (location?.kind === "s3" && (!values.AWS_ACCESS_KEY_ID || !values.AWS_SECRET_ACCESS_KEY)) {
    throw new ConfigError(
      "Cannot start: IMAGE_STORE_URL needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    );
  }
  if (location?.kind === "memory" && broker !== "memory") {
    throw new ConfigError(
      "Cannot start: IMAGE_STORE_URL=memory:// works only with the embedded broker; use s3:// with Redis",
    );
  }
}

function applyUpstashLimits(
  values: z.infer<typeof envSchema>,
  given: Record<string, string | undefined>,
): void {
  // With an image store no image crosses Upstash's request limit: the download cap stays the service's.
  const stored = values.IMAGE_STORE_URL !== undefined;
  if (given.DOWNLOAD_MAX_BYTES === undefined && !stored) {
    values.DOWNLOAD_MAX_BYTES = UPSTASH_DEFAULT_IMAGE_BYTES;
  }
  if (values.DOWNLOAD_MAX_BYTES > UPSTASH_MAX_IMAGE_BYTES && !stored) {
    throw new ConfigError(
      `Cannot start: DOWNLOAD_MAX_BYTES must be at most ${UPSTASH_MAX_IMAGE_BYTES} with Upstash (10 MB request limit)`,
    );
  }
  if (values.WORKER_CONCURRENCY > 1000) {
    throw new ConfigError(
      "Cannot start: WORKER_CONCURRENCY must be at most 1000 with Upstash (pending entries per consumer)",
    );
  }
}
