/**
 * Job partitions and the Redis key names of the broker: with one partition today's untagged keys, with
 * N > 1 one hash tag per partition, chosen so the N tags' Cluster slots spread evenly over 0…16383.
 */
import { keySlot, SLOT_COUNT } from "../redis/slot.ts";

/** The most partitions a deployment may have (each needs its own tag, found by search). */
export const MAX_PARTITIONS = 1024;

const encoder = new TextEncoder();
const TAGS = new Map<number, string[]>();

/** The partition of a job id: FNV-1a (32 bit) of its UTF-8 bytes modulo `n`, the same in every process. */
export function partitionOf(id: string, n: number): number {
  if (n <= 1) return 0;
  let hash = 0x811c9dc5;
  for (const byte of encoder.encode(id)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash % n;
}

/**
 * The hash tags of `n` partitions: tag i is the first `"<i>.<k>"` (k = 0, 1, …) whose slot falls in
 * [i·16384/n, (i+1)·16384/n), so masters that own equal contiguous slot ranges get equal shares.
 */
export function partitionTags(n: number): string[] {
  const known = TAGS.get(n);
  if (known) return [...known];
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTITIONS) {
    throw new RangeError(`Cannot split jobs into ${n} partitions: use 1 to ${MAX_PARTITIONS}`);
  }
  const tags: string[] = [];
  for (let i = 0; i < n; i++) {
    const low = Math.floor(i * SLOT_COUNT / n);
    const high = Math.floor((i + 1) * SLOT_COUNT / n);
    for (let k = 0;; k++) {
      const slot = keySlot(`${i}.${k}`);
      if (slot >= low && slot < high) {
        tags.push(`${i}.${k}`);
        break;
      }
    }
  }
  TAGS.set(n, tags);
  return [...tags];
}

/**
 * The broker's key names. With one partition: `P jobs`, `P job:<id>`, `P events`, `P jobs:delayed`,
 * `P jobs:dead`, `P owner:<o>:active|rate`. With N > 1: `P{t}jobs`, `P{t}job:<id>`, `P{t}events`,
 * `P{t}jobs:delayed`, `P{t}jobs:dead` per partition tag t, `P{o:<o>}active|rate` per owner, and
 * `P jobs` stays the intake that other services add entries to.
 */
export class KeyLayout {
  readonly prefix: string;
  readonly partitions: number;
  /**
   * True when the partitions' keys carry hash tags (N > 1, or any N on a Redis Cluster, where one
   * script's keys must share a slot); then `P jobs` is a separate intake that a mover spreads.
   */
  readonly tagged: boolean;
  #tags: string[];

  constructor(prefix: string, partitions = 1, { tagged = partitions > 1 } = {}) {
    this.prefix = prefix;
    this.partitions = partitions;
    this.tagged = tagged;
    this.#tags = tagged ? partitionTags(partitions).map((tag) => `{${tag}}`) : [""];
  }

  /** The partition of a job id. */
  partitionOf(id: string): number {
    return partitionOf(id, this.partitions);
  }

  /** The hash tag of partition `p`, braces included ("" with one partition). */
  tag(p: number): string {
    return this.#tags[p];
  }

  /** The jobs stream of partition `p`. */
  jobs(p: number): string {
    return `${this.prefix}${this.#tags[p]}jobs`;
  }

  /** The relay feed of partition `p`. */
  events(p: number): string {
    return `${this.prefix}${this.#tags[p]}events`;
  }

  /** The delayed-retry sorted set of partition `p`. */
  delayed(p: number): string {
    return `${this.prefix}${this.#tags[p]}jobs:delayed`;
  }

  /** The pending webhook deliveries (sorted set, scored by due time) of partition `p`. */
  webhooks(p: number): string {
    return `${this.prefix}${this.#tags[p]}webhooks`;
  }

  /** The pending Socket.IO notices (sorted set, scored by due time) of partition `p`. */
  notices(p: number): string {
    return `${this.prefix}${this.#tags[p]}notices`;
  }

  /** The waiting room of partition `p`: jobs waiting for a provider turn, in fair order (sorted set). */
  room(p: number): string {
    return `${this.prefix}${this.#tags[p]}fair`;
  }

  /** The waiting room's virtual clock and owners' next start tags (hash) of partition `p`. */
  clock(p: number): string {
    return `${this.prefix}${this.#tags[p]}fair:clock`;
  }

  /** The provider's pace (hash) as partition `p` spends its share of it. */
  pace(p: number): string {
    return `${this.prefix}${this.#tags[p]}pace`;
  }

  /** The intake entries partition `p` copied (sorted set of intake ids by time), each copied once. */
  intakeMarks(p: number): string {
    return `${this.prefix}${this.#tags[p]}intake:copied`;
  }

  /** The dead-letter stream of partition `p`. */
  dead(p: number): string {
    return `${this.prefix}${this.#tags[p]}jobs:dead`;
  }

  /** What the hashes of partition `p`'s jobs start with. */
  jobPrefix(p: number): string {
    return `${this.prefix}${this.#tags[p]}job:`;
  }

  /** The hash of job `id`, in its partition. */
  job(id: string): string {
    return `${this.prefix}${this.#tags[this.partitionOf(id)]}job:${id}`;
  }

  /** The reference images of job `id` while it runs (a hash `ref0`…), on the job's tag. */
  refs(id: string): string {
    return `${this.prefix}${this.#tags[this.partitionOf(id)]}refs:${id}`;
  }

  /** The stream other services add entries to: partition 0's stream unless the keys are tagged. */
  get intake(): string {
    return `${this.prefix}jobs`;
  }

  /** The owner's set of active job ids. */
  ownerActive(owner: string): string {
    return !this.tagged
      ? `${this.prefix}owner:${owner}:active`
      : `${this.prefix}{o:${owner}}active`;
  }

  /** The owner's index of jobs (sorted set of ids, scored by creation time in ms). */
  ownerJobs(owner: string): string {
    return !this.tagged ? `${this.prefix}owner:${owner}:jobs` : `${this.prefix}{o:${owner}}jobs`;
  }

  /** The owner's submission counter of the current one-minute window. */
  ownerRate(owner: string): string {
    return !this.tagged ? `${this.prefix}owner:${owner}:rate` : `${this.prefix}{o:${owner}}rate`;
  }

  /** The owner's usage of one UTC day (`YYYY-MM-DD`): images, cost, jobs by end, quota reserved. */
  ownerUsage(owner: string, day: string): string {
    return !this.tagged
      ? `${this.prefix}owner:${owner}:usage:${day}`
      : `${this.prefix}{o:${owner}}usage:${day}`;
  }

  /** A secret shared by every process. */
  secret(name: string): string {
    return `${this.prefix}secret:${name}`;
  }
}
