/** What the Redis broker's parts share: the client, key names, scripts and the consumer group's upkeep. */
import { defineScript, type RedisClient, type RedisReply, type Script } from "../redis/types.ts";
import { ACK, CREATE, FINISH, PROMOTE, PRUNE, RENEW, RETRY, START } from "./scripts.ts";

const SOURCES = {
  create: CREATE,
  start: START,
  finish: FINISH,
  retry: RETRY,
  renew: RENEW,
  promote: PROMOTE,
  prune: PRUNE,
  ack: ACK,
};

/** The name of one of the broker's Lua scripts. */
export type ScriptName = keyof typeof SOURCES;

/** The consumer group of the jobs stream. */
export const GROUP = "workers";

/** True for the reply Redis gives when the jobs stream or its group is missing (data lost). */
function isMissingGroup(error: unknown): boolean {
  return error instanceof Error && /NOGROUP|no such key/.test(error.message);
}

/** The client, key names, scripts and group of one Redis broker. */
export class RedisContext {
  readonly client: RedisClient;
  readonly ttl: string;
  readonly feedMax: string;
  #prefix: string;
  #scripts: Promise<Record<ScriptName, Script>>;

  constructor(
    client: RedisClient,
    options: { prefix: string; ttlSec: number; feedMaxLen: number },
  ) {
    this.client = client;
    this.#prefix = options.prefix;
    this.ttl = String(options.ttlSec);
    this.feedMax = String(options.feedMaxLen);
    this.#scripts = (async () => {
      const entries = Object.entries(SOURCES).map(async ([name, source]) =>
        [name, await defineScript(source)] as const
      );
      return Object.fromEntries(await Promise.all(entries)) as Record<ScriptName, Script>;
    })();
  }

  /** The full name of a key. */
  key(name: string): string {
    return this.#prefix + name;
  }

  /** The key of a job's hash. */
  job(id: string): string {
    return this.key(`job:${id}`);
  }

  /** Runs one of the broker's scripts. */
  async run(name: ScriptName, keys: string[], args: string[]): Promise<RedisReply> {
    return await this.client.eval((await this.#scripts)[name], keys, args);
  }

  /** Creates the jobs stream and its group unless they exist. */
  async init(): Promise<void> {
    try {
      await this.client.send(["XGROUP", "CREATE", this.key("jobs"), GROUP, "0", "MKSTREAM"]);
    } catch (error) {
      if (!(error instanceof Error && error.message.includes("BUSYGROUP"))) throw error;
    }
  }

  /**
   * Runs `call`; when Redis answers that the group is missing (a restart without persistence, a
   * FLUSHALL, a failover to an empty replica), recreates it and runs `call` once more.
   */
  async grouped<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (!isMissingGroup(error)) throw error;
      await this.init();
      return await call();
    }
  }
}
