/** Options of the Redis Cluster transport: seed URLs parsed, and the ioredis Cluster settings they give. */
import type { ClusterOptions, NatMap } from "ioredis";

/** Options of the cluster transport. */
export interface ClusterClientOptions {
  /** Seed nodes, `redis://[[user]:password@]host:port`; the rest of the cluster is discovered. */
  urls: string[];
  /** Deadline of every non-blocking command, and of waiting for the cluster to be ready, in ms. */
  commandTimeoutMs?: number;
  /** Maps the addresses that nodes announce to reachable ones (a cluster behind NAT or Docker). */
  natMap?: NatMap;
  /** Called with connection errors (ioredis reconnects by itself). */
  onError?: (error: Error) => void;
}

/** The seed nodes and the credentials they share. */
export interface Seeds {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
}

/** Splits seed URLs into host/port pairs and the credentials they share. */
export function parseSeeds(urls: string[]): Seeds {
  if (urls.length === 0) throw new RangeError("Cannot connect to Redis Cluster: no seed URL");
  const seeds: Seeds = { nodes: [] };
  for (const raw of urls) {
    const url = new URL(raw);
    if (url.protocol !== "redis:" || !url.port) {
      throw new RangeError(`Cannot connect to Redis Cluster: ${url.host} is not redis://host:port`);
    }
    seeds.nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port) });
    if (url.password) seeds.password ??= decodeURIComponent(url.password);
    if (url.username) seeds.username ??= decodeURIComponent(url.username);
  }
  return seeds;
}

/** The ioredis Cluster options for these settings (a blocking client has no command deadline). */
export function clusterOptions(options: ClusterClientOptions, seeds: Seeds, blocking: boolean) {
  const commandTimeoutMs = options.commandTimeoutMs ?? 3_000;
  return {
    // Needed: without it, a burst to a node whose connection is still opening is re-sent to a random
    // node 100 ms later and redirected. Its waits are bounded by #ready and #bounded instead.
    enableOfflineQueue: true,
    // ioredis re-sends an auto-pipeline (a batch of many slots) whole when its read-only commands met
    // ASK, and then reads the keys that had not moved from the target, as if missing: commands go one
    // by one, and pipeline() batches per node itself.
    enableAutoPipelining: false,
    // Masters only: a replica may lag behind the write that the next command depends on.
    scaleReads: "master",
    // A slot migration costs MOVED then ASK per command; leave room for a few refreshes on top.
    maxRedirections: 16,
    retryDelayOnMoved: 0,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: Math.min(commandTimeoutMs, 2_000),
    slotsRefreshInterval: 5_000,
    clusterRetryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    natMap: options.natMap,
    redisOptions: {
      username: seeds.username,
      password: seeds.password,
      connectTimeout: Math.min(commandTimeoutMs, 5_000),
      // A blocking read must not be cut by the command deadline; callers bound it themselves.
      commandTimeout: blocking ? undefined : commandTimeoutMs,
      maxRetriesPerRequest: 1,
    },
  } satisfies ClusterOptions;
}
