/** What the Redis broker's parts share: the client, key names, scripts and the consumer group's upkeep. */
import {
  defineScript,
  type PipelineReply,
  type RedisArg,
  type RedisClient,
  type RedisCommand,
  type RedisReply,
  type Script,
} from "../redis/types.ts";
import { KeyLayout } from "./partitions.ts";
import { RecentImages } from "./recent_images.ts";
import {
  ACK,
  FINISH,
  PROMOTE,
  PRUNE,
  RENEW,
  RETRY,
  RETRY_WEBHOOK,
  START,
  TAKE_WEBHOOKS,
} from "./scripts.ts";
import { CREATE, OWNER, PARK, RELEASE } from "./scripts_submit.ts";
import { THROTTLE, TURN } from "../pace/lua.ts";
import { COPY_INTAKE } from "./scripts_intake.ts";
import { WAKE_RULES, withWake } from "./wake_scripts.ts";
import { PROBE } from "./scripts_probe.ts";
import { TURN_CLAIM } from "./scripts_claim.ts";

const SOURCES = {
  create: CREATE,
  owner: OWNER,
  release: RELEASE,
  start: START,
  finish: FINISH,
  retry: RETRY,
  renew: RENEW,
  promote: PROMOTE,
  prune: PRUNE,
  ack: ACK,
  takeWebhooks: TAKE_WEBHOOKS,
  retryWebhook: RETRY_WEBHOOK,
  turn: TURN,
  /** TURN asked for later (kick): with wake-ups on, it tells the workers what it moved. */
  kickTurn: TURN,
  throttle: THROTTLE,
  park: PARK,
  copyIntake: COPY_INTAKE,
  probe: PROBE,
  turnClaim: TURN_CLAIM,
};

/** The name of one of the broker's Lua scripts. */
export type ScriptName = keyof typeof SOURCES;

const INDEX_REFRESH_MS = 60_000;
const INDEX_REFRESH_MAX = 10_000;

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
  /** How long the relay feeds keep their items (replays of all of an owner's jobs reach this far). */
  readonly feedRetentionMs: number;
  /** The key names, per partition. */
  readonly keys: KeyLayout;
  /** How many partitions the jobs are split into. */
  readonly partitions: number;
  /**
   * Each partition's share of the provider's pace, as the scripts take it: requests/s (the deployment's
   * pace over N), 0 to learn it from 429s, -1 never paced.
   */
  readonly paceCap: string;
  /** Timers of turns asked for later (cleared on close). */
  readonly timers = new Set<ReturnType<typeof setTimeout>>();
  /** The most bytes one stored image may have (0: no cap). */
  readonly maxImageBytes: number;
  /** True when FINISH adds a Socket.IO notice of each job end. */
  readonly notices: boolean;
  /** Reports a failed write that no caller waits for. */
  readonly report: (what: string, error: unknown) => void;
  /** True when one pipeline may hold keys of different slots (not so on a Cluster). */
  readonly multiSlotPipelines: boolean;
  /** Images this process stored a moment ago, for its own relay. */
  readonly recent = new RecentImages();
  #scripts: Promise<Record<ScriptName, Script>>;
  /** When this process last set each owner's index expiry (cleared whole when it grows too big). */
  #indexRefreshed = new Map<string, number>();

  constructor(
    client: RedisClient,
    options: {
      prefix: string;
      ttlSec: number;
      feedRetentionMs: number;
      partitions: number;
      multiSlotPipelines: boolean;
      /** On a Cluster every partition is tagged, even a single one. */
      cluster?: boolean;
      /** Provider requests/s of the whole deployment (0: learned from 429s; null: never paced). */
      pace?: number | null;
      /** Told of a failed write that no caller waits for (default: console.error). */
      onError?: (what: string, error: unknown) => void;
      /** The most bytes one stored image may have, checked in Redis by FINISH (0: no cap). */
      maxImageBytes?: number;
      /** FINISH adds a Socket.IO notice of each job end (the bridge is on in this process). */
      notices?: boolean;
      /** Where the scripts publish wake-ups (see wake_scripts.ts); unset: they publish none. */
      wakeChannels?: { all: string; work: string };
    },
  ) {
    this.client = client;
    const tagged = options.partitions > 1 || options.cluster === true;
    this.keys = new KeyLayout(options.prefix, options.partitions, { tagged });
    this.partitions = options.partitions;
    this.multiSlotPipelines = options.multiSlotPipelines;
    this.ttl = String(options.ttlSec);
    const pace = options.pace === undefined ? null : options.pace;
    this.maxImageBytes = options.maxImageBytes ?? 0;
    this.notices = options.notices === true;
    this.report = options.onError ??
      ((what, error) => console.error(`Cannot ${what}: ${String(error)}`));
    this.paceCap = pace === null ? "-1" : String(pace / options.partitions);
    this.feedRetentionMs = options.feedRetentionMs;
    this.#scripts = (async () => {
      const channels = options.wakeChannels;
      const entries = Object.entries(SOURCES).map(async ([name, source]) => {
        const rule = WAKE_RULES[name as keyof typeof WAKE_RULES];
        const text = channels && rule ? withWake(source, rule, channels) : source;
        return [name, await defineScript(text)] as const;
      });
      return Object.fromEntries(await Promise.all(entries)) as Record<ScriptName, Script>;
    })();
  }

  /**
   * True when this process should set the expiry of `owner`'s job index with this submit: on its
   * first submit for that owner, then at most once a minute (the expiry is a day or more, so a minute
   * between renewals loses nothing, and a busy owner's submits skip the EXPIRE).
   */
  indexRefresh(owner: string, now = Date.now()): boolean {
    const last = this.#indexRefreshed.get(owner);
    if (last !== undefined && now - last < INDEX_REFRESH_MS) return false;
    if (this.#indexRefreshed.size >= INDEX_REFRESH_MAX) this.#indexRefreshed.clear();
    this.#indexRefreshed.set(owner, now);
    return true;
  }

  /** The oldest feed id to keep now: an XADD trims items older than the retention (`MINID ~`). */
  get feedFloor(): string {
    return `${Math.max(0, Date.now() - this.feedRetentionMs)}-0`;
  }

  /** The key of a job's hash, in its partition. */
  job(id: string): string {
    return this.keys.job(id);
  }

  /** The partition numbers, 0 … N-1. */
  get all(): number[] {
    return Array.from({ length: this.partitions }, (_, p) => p);
  }

  /**
   * Runs one step per partition, concurrently, so that a partition whose master is down pauses only
   * its own work: its failure is reported and its result left undefined. Throws only when every
   * partition failed (then nothing was done, as with one partition).
   */
  async perPartition<T>(
    what: string,
    parts: number[],
    step: (p: number) => Promise<T>,
  ): Promise<(T | undefined)[]> {
    const settled = await Promise.allSettled(parts.map(step));
    const failed = settled.filter((s) => s.status === "rejected");
    if (failed.length > 0 && failed.length === settled.length) throw failed[0].reason;
    settled.forEach((s, i) => {
      if (s.status === "rejected") this.report(`${what} of partition ${parts[i]}`, s.reason);
    });
    return settled.map((s) => s.status === "fulfilled" ? s.value : undefined);
  }

  /**
   * Sends commands whose keys may live in different slots in one round trip: one pipeline where the
   * transport allows it (REST), else concurrent sends (auto-pipelined per node); errors stay in place.
   */
  async spread(commands: RedisCommand[]): Promise<PipelineReply[]> {
    if (commands.length === 0) return [];
    if (this.multiSlotPipelines) {
      return await this.client.pipeline(commands);
    }
    return await Promise.all(
      commands.map((command) => this.client.send(command).catch((error: Error) => error)),
    );
  }

  /** Runs one of the broker's scripts. */
  async run(name: ScriptName, keys: string[], args: RedisArg[]): Promise<RedisReply> {
    return await this.client.eval((await this.#scripts)[name], keys, args);
  }

  /** Creates every partition's jobs stream and the intake (with N > 1), and their group, unless they exist. */
  async init(): Promise<void> {
    const streams = this.all.map((p) => this.keys.jobs(p));
    if (this.keys.tagged) streams.push(this.keys.intake);
    const replies = await this.spread(
      streams.map((stream) => ["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]),
    );
    for (const reply of replies) {
      if (reply instanceof Error && !reply.message.includes("BUSYGROUP")) throw reply;
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
