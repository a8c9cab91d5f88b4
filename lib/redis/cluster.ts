/** The Redis Cluster transport: an ioredis Cluster behind the small RedisClient interface. */
import {
  Cluster,
  type ClusterOptions,
  Command,
  type NatMap,
  type Redis,
  ReplyError,
} from "ioredis";
import { BrokerUnavailableError } from "../errors.ts";
import { keySlot } from "./slot.ts";
import { classify, isNoScript } from "./tcp.ts";
import type { PipelineReply, RedisClient, RedisCommand, RedisReply, Script } from "./types.ts";

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

interface Seeds {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
}

/** Splits seed URLs into host/port pairs and the credentials they share. */
function parseSeeds(urls: string[]): Seeds {
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

function clusterOptions(options: ClusterClientOptions, seeds: Seeds, blocking: boolean) {
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

/** Replies that mean "this command ran nowhere; ask another node": safe to send again elsewhere. */
const REDIRECTED = /^(MOVED|ASK|TRYAGAIN) /;

/** Commands with subcommands whose key ioredis does not see: it follows the subcommand. */
const CONTAINERS = new Set(["xgroup", "xinfo", "object", "memory"]);

/** One command as ioredis sends it, and its keys (undefined where an argument is missing). */
function toCommand(
  [name, ...args]: RedisCommand,
): { command: Command; keys: (string | undefined)[] } {
  const command = new Command(name, args, { replyEncoding: "utf8" });
  const keys = command.getKeys() as (string | undefined)[];
  if (keys.length > 0 || !CONTAINERS.has(name.toLowerCase()) || args.length < 2) {
    return { command, keys };
  }
  // ioredis would send it to a random node and follow the MOVED: give it the slot it cannot see.
  Object.assign(command, { slot: keySlot(args[1]) });
  return { command, keys: [args[1]] };
}

/** The slots that the keys of `commands` hash to; throws when a command lacks a key argument. */
function slotsOf(commands: RedisCommand[]): Set<number> {
  const slots = new Set<number>();
  for (const command of commands) {
    for (const key of toCommand(command).keys) {
      if (key === undefined) {
        throw new Error(`Cannot send the pipeline: ${command[0]} lacks a key argument`);
      }
      slots.add(keySlot(key));
    }
  }
  return slots;
}

class ClusterClient implements RedisClient {
  #cluster: Cluster;
  #options: ClusterClientOptions;
  #seeds: Seeds;
  #timeoutMs: number;
  #children = new Set<ClusterClient>();
  #isBlocking: boolean;
  #onClose: (() => void) | undefined;
  #closing: Promise<void> | null = null;
  #lastError: Error | undefined;

  constructor(options: ClusterClientOptions, seeds: Seeds, blocking = false, onClose?: () => void) {
    this.#options = options;
    this.#seeds = seeds;
    this.#timeoutMs = options.commandTimeoutMs ?? 3_000;
    this.#isBlocking = blocking;
    this.#onClose = onClose;
    this.#cluster = new Cluster(seeds.nodes, clusterOptions(options, seeds, blocking));
    const report = (error: Error) => {
      this.#lastError = error;
      options.onError?.(error);
    };
    this.#cluster.on("error", report);
    this.#cluster.on("node error", report);
  }

  /** Resolves once the cluster is ready, or rejects with BrokerUnavailableError at the deadline. */
  async #ready(): Promise<void> {
    if (this.#closing) {
      throw new BrokerUnavailableError("Cannot reach Redis Cluster: client closed");
    }
    if (this.#cluster.status === "ready") return;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const timer = setTimeout(() => {
      const why = this.#lastError ? ` (last error: ${this.#lastError.message})` : "";
      reject(
        new BrokerUnavailableError(
          `Cannot reach Redis Cluster: not ready within ${this.#timeoutMs} ms${why}`,
        ),
      );
    }, this.#timeoutMs);
    this.#cluster.once("ready", resolve);
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      this.#cluster.off("ready", resolve);
    }
  }

  /**
   * Bounds a non-blocking command: ioredis keeps a command that met a cluster in flux in its offline
   * queue until the cluster is back, beyond the per-node deadline. Redirections get room on top.
   */
  #bounded<T>(sent: Promise<T>): Promise<T> {
    if (this.#isBlocking) return sent;
    const limitMs = 2 * this.#timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new BrokerUnavailableError(`Cannot reach Redis Cluster: no answer within ${limitMs} ms`),
        );
      }, limitMs);
    });
    sent.catch(() => {}); // Settled by the race; a late rejection after the deadline is expected.
    return Promise.race([sent, deadline]).finally(() => clearTimeout(timer));
  }

  async send(command: RedisCommand): Promise<RedisReply> {
    await this.#ready();
    try {
      const prepared = toCommand(command);
      // ioredis's cluster routing throws outside any promise on a command that lacks its key argument;
      // such a command goes to any master, which answers with its arity error.
      if (prepared.keys.includes(undefined)) {
        const [node] = this.#cluster.nodes("master");
        if (!node) throw new Error("no master connected");
        return await this.#bounded(node.call(command[0], ...command.slice(1))) as RedisReply;
      }
      return await this.#bounded(
        this.#cluster.sendCommand(prepared.command) as Promise<RedisReply>,
      ) as RedisReply;
    } catch (error) {
      throw classify(error);
    }
  }

  async pipeline(commands: RedisCommand[]): Promise<PipelineReply[]> {
    if (commands.length === 0) return [];
    const slots = slotsOf(commands);
    if (slots.size > 1) {
      throw new Error(
        `Cannot send the pipeline: its keys hash to slots ${
          [...slots].join(", ")
        }, and a cluster pipeline must stay on one slot`,
      );
    }
    await this.#ready();
    // One round trip to the master that the slot map names (ioredis's cluster pipeline would re-send
    // a half-redirected batch whole, see above); a command redirected by MOVED, ASK or TRYAGAIN ran
    // nowhere and goes again on its own, in order, where ioredis follows the redirection.
    const [slot] = slots;
    const target = slot === undefined ? undefined : this.#cluster.slots[slot]?.[0];
    const node = this.#cluster.nodes("master").find((candidate) =>
      target === undefined || `${candidate.options.host}:${candidate.options.port}` === target
    );
    const replies: PipelineReply[] = node
      ? await this.#pipelineOn(node, commands)
      : commands.map(() => new ReplyError("TRYAGAIN no connection to the slot's master yet"));
    for (let i = 0; i < replies.length; i++) {
      const reply = replies[i];
      if (reply instanceof Error && REDIRECTED.test(reply.message)) {
        replies[i] = await this.send(commands[i]).catch((error: Error) => error);
      }
    }
    return replies;
  }

  async #pipelineOn(node: Redis, commands: RedisCommand[]): Promise<PipelineReply[]> {
    const pipe = node.pipeline();
    for (const [name, ...args] of commands) pipe.call(name, ...args);
    const results = await this.#bounded(pipe.exec()).catch((error) => {
      throw classify(error);
    }) ?? [];
    return results.map(([error, reply]) => error ? classify(error) : (reply as RedisReply));
  }

  async eval(script: Script, keys: string[], args: string[]): Promise<RedisReply> {
    // ioredis routes EVALSHA / EVAL by their first key; every master keeps its own script cache.
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await this.send(["EVALSHA", script.sha, ...tail]);
    } catch (error) {
      if (!isNoScript(error)) throw error;
      return await this.send(["EVAL", script.source, ...tail]);
    }
  }

  blocking(): RedisClient | null {
    const child: ClusterClient = new ClusterClient(
      this.#options,
      this.#seeds,
      true,
      () => this.#children.delete(child),
    );
    this.#children.add(child);
    return child;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const results = await Promise.allSettled([
        ...[...this.#children].map((child) => child.close()),
        // A blocking connection may be inside a long read: drop it rather than wait for QUIT.
        this.#isBlocking || this.#cluster.status !== "ready"
          ? Promise.resolve()
          : this.#cluster.quit(),
      ]);
      this.#cluster.disconnect();
      this.#onClose?.();
      for (const result of results) {
        if (result.status === "rejected") this.#options.onError?.(result.reason);
      }
    })();
    return this.#closing;
  }
}

/**
 * Connects to a Redis Cluster through its seed nodes; follows MOVED and ASK, refreshes its slot map,
 * and reconnects by itself. Pipelines must keep to one slot.
 */
export function createClusterClient(options: ClusterClientOptions): RedisClient {
  return new ClusterClient(options, parseSeeds(options.urls));
}
