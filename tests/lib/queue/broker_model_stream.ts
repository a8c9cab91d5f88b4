/**
 * The reference model of the jobs stream, part of broker_model.ts: entries per partition, the
 * deliveries claim and reclaim hand out, and the reclaim cursors.
 */
import { partitionOf } from "../../../lib/queue/partitions.ts";
import { FairRoom } from "../../../lib/pace/fair_room.ts";

/** A delivery as every runner reports it: its entry by order of first appearance. */
export interface SeenDelivery {
  entry: number;
  jobId: string;
  deliveries: number;
  consumer: string;
}

/** A stream entry and where it stands. */
export interface MEntry {
  jobId: string;
  state: "fresh" | "pending" | "acked";
  consumer: string;
  deliveries: number;
  /** Order of first delivery, as runners label entries. */
  label?: number;
}

/** The entries of every partition's stream, in the order they were added. */
export class StreamModel {
  entries: MEntry[] = [];
  /** Every delivery handed out, oldest first. */
  deliveries: { entry: number; consumer: string }[] = [];
  #labels = 0;
  /** Per partition, where the next reclaim resumes (an index into `entries`). */
  #cursors: number[];
  #next = 0;
  readonly partitions: number;
  /**
   * Per partition, the jobs waiting for their turn (the brokers are unpaced here, so a turn comes
   * whenever a claim asks). The room itself is small and tested on its own (fair_room_test.ts); the
   * model checks what the brokers do with it: who waits, and when a claim moves them.
   */
  rooms: FairRoom[];

  /** With N > 1, claims and reclaims go partition by partition, starting one further each call. */
  constructor(partitions: number) {
    this.partitions = partitions;
    this.#cursors = new Array(partitions).fill(0);
    this.rooms = Array.from({ length: partitions }, () => new FairRoom());
  }

  /** A job ready to run: onto its stream when nobody waits there, else into its room. */
  enqueue(jobId: string, owner: string): void {
    const p = partitionOf(jobId, this.partitions);
    const lag = this.entries.filter((e) => e.state === "fresh").filter(this.#in(p)).length;
    if (this.rooms[p].size === 0 && lag === 0) this.add(jobId);
    else this.rooms[p].park(jobId, owner);
  }

  /** A job back at the front of its owner's line (a due retry). */
  parkFront(jobId: string, owner: string): void {
    this.rooms[partitionOf(jobId, this.partitions)].park(jobId, owner, true);
  }

  /** A job that ended while it waited leaves its room. */
  leave(jobId: string): void {
    this.rooms[partitionOf(jobId, this.partitions)].remove(jobId);
  }

  /** Adds a fresh entry for the job. */
  add(jobId: string): void {
    this.entries.push({ jobId, state: "fresh", consumer: "", deliveries: 0 });
  }

  /** The delivery `n` back from the latest. */
  delivery(n: number): { entry: number; consumer: string } {
    return this.deliveries[this.deliveries.length - 1 - n % this.deliveries.length];
  }

  #rotation(): number[] {
    const first = this.#next;
    this.#next = (this.#next + 1) % this.partitions;
    return Array.from({ length: this.partitions }, (_, i) => (first + i) % this.partitions);
  }

  #in(p: number): (entry: MEntry) => boolean {
    return (entry) => partitionOf(entry.jobId, this.partitions) === p;
  }

  /** Takes up to `count` fresh entries, partition by partition. */
  claim(consumer: string, count: number): SeenDelivery[] {
    const out: SeenDelivery[] = [];
    for (const p of this.#rotation()) {
      if (out.length >= count) break;
      for (const id of this.rooms[p].pop(count - out.length)) this.add(id);
      const fresh = this.entries.filter((e) => e.state === "fresh").filter(this.#in(p));
      out.push(...this.#take(fresh, consumer, count - out.length));
    }
    return out;
  }

  #take(candidates: MEntry[], consumer: string, count: number): SeenDelivery[] {
    return candidates.slice(0, count).map((entry) => {
      Object.assign(entry, { state: "pending", consumer, deliveries: entry.deliveries + 1 });
      entry.label ??= this.#labels++;
      this.deliveries.push({ entry: this.entries.indexOf(entry), consumer });
      const { jobId, deliveries } = entry;
      return { entry: entry.label, jobId, deliveries, consumer };
    });
  }

  /** Takes pending entries in stream order, resuming after the previous reclaim's last (a cursor). */
  reclaim(consumer: string, count: number): SeenDelivery[] {
    const out: SeenDelivery[] = [];
    for (const p of this.#rotation()) {
      if (out.length >= count) break;
      const order = this.entries
        .filter((e, n) => e.state === "pending" && n >= this.#cursors[p])
        .filter(this.#in(p));
      const taken = this.#take(order, consumer, count - out.length);
      const next = order[taken.length];
      this.#cursors[p] = next ? this.entries.indexOf(next) : 0;
      out.push(...taken);
    }
    return out;
  }
}
