/** The Redis Cluster transport: an ioredis Cluster behind the small RedisClient interface. */
export type { ClusterClientOptions } from "./cluster_options.ts";
import { Cluster, Command, type Redis, ReplyError } from "ioredis";
import { BrokerUnavailableError } from "../errors.ts";
import {
  type ClusterClientOptions,
  clusterOptions,
  parseSeeds,
  type Seeds,
} from "./cluster_options.ts";
import { keySlot } from "./slot.ts";
import { callBytes, classify, closeConnection, execPipeline, toArgs } from "./tcp.ts";
import type {
  PipelineReply,
  RedisArg,
  RedisClient,
  RedisCommand,
  RedisReply,
  Script,
} from "./types.ts";
import { evalWithFallback } from "./types.ts";

/** Replies that mean "this command ran nowhere; ask another node": safe to send again elsewhere. */
const REDIRECTED = /^(MOVED|ASK|TRYAGAIN) /;

/** Commands with subcommands whose key ioredis does not see: it follows the subcommand. */
const CONTAINERS = new Set(["xgroup", "xinfo", "object", "memory"]);

/**
 * One command as ioredis sends it, and its keys (undefined where an argument is missing); with
 * `bytes`, its bulk-string replies stay Buffers.
 */
function toCommand(
  [head, ...rest]: RedisCommand,
  bytes = false,
): { command: Command; keys: (string | undefined)[] } {
  const name = String(head);
  const args = toArgs(rest);
  const command = new Command(name, args, { replyEncoding: bytes ? null : "utf8" });
  const keys = (command.getKeys() as (string | Uint8Array | undefined)[]).map((key) =>
    key === undefined ? undefined : String(key)
  );
  if (keys.length > 0 || !CONTAINERS.has(name.toLowerCase()) || args.length < 2) {
    return { command, keys };
  }
  // ioredis would send it to a random node and follow the MOVED: give it the slot it cannot see.
  const key = String(args[1]);
  Object.assign(command, { slot: keySlot(key) });
  return { command, keys: [key] };
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
  readonly binary = true;
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

  send(command: RedisCommand): Promise<RedisReply> {
    return this.#send(command, false);
  }

  sendBytes(command: RedisCommand): Promise<RedisReply> {
    return this.#send(command, true);
  }

  async #send(command: RedisCommand, bytes: boolean): Promise<RedisReply> {
    await this.#ready();
    try {
      const prepared = toCommand(command, bytes);
      // ioredis's cluster routing throws outside any promise on a command that lacks its key argument;
      // such a command goes to any master, which answers with its arity error.
      if (prepared.keys.includes(undefined)) {
        const [node] = this.#cluster.nodes("master");
        if (!node) throw new Error("no master connected");
        const [name, ...args] = [String(command[0]), ...toArgs(command.slice(1))];
        const call = bytes ? callBytes(node, name, args) : node.call(name, ...args);
        return await this.#bounded(call) as RedisReply;
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

  #pipelineOn(node: Redis, commands: RedisCommand[]): Promise<PipelineReply[]> {
    return execPipeline(node.pipeline(), commands, (sent) => this.#bounded(sent));
  }

  eval(script: Script, keys: string[], args: RedisArg[]): Promise<RedisReply> {
    // ioredis routes EVALSHA / EVAL by their first key; every master keeps its own script cache.
    return evalWithFallback((command) => this.send(command), script, { keys, args });
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
    this.#closing ??= closeConnection({
      children: this.#children,
      // A blocking connection may be inside a long read: drop it rather than wait for QUIT.
      quit: this.#isBlocking || this.#cluster.status !== "ready"
        ? undefined
        : () => this.#cluster.quit(),
      disconnect: () => this.#cluster.disconnect(),
      onClose: this.#onClose,
      onError: this.#options.onError,
    });
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
