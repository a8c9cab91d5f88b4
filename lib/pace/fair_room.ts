/**
 * A waiting room in one process (the in-memory broker's): start-time fair queuing over owners, as the
 * Redis scripts keep it in a sorted set (lib/pace/lua.ts). A new job starts at the later of the room's
 * virtual clock and its owner's next tag, so every owner with jobs waiting gets one turn per round and
 * an owner's jobs keep their order; a job put back goes to the clock, ahead of its owner's later ones.
 */

interface Waiting {
  id: string;
  owner: string;
  score: number;
  /** `"<id> <owner>"`: ties go in its order, as a Redis sorted set orders equal scores. */
  member: string;
}

/** Jobs waiting for a provider turn, in fair order. */
export class FairRoom {
  #jobs = new Map<string, Waiting>();
  #next = new Map<string, number>();
  #clock = 0;

  /** Jobs waiting. */
  get size(): number {
    return this.#jobs.size;
  }

  /** True when the job waits here. */
  has(id: string): boolean {
    return this.#jobs.has(id);
  }

  /** Adds a job; `front` puts it back at the clock (a retry, or a turn given back). */
  park(id: string, owner: string, front = false): void {
    let score = this.#clock;
    if (!front) {
      score = Math.max(this.#clock, this.#next.get(owner) ?? 0);
      this.#next.set(owner, score + 1);
    }
    this.#jobs.set(id, { id, owner, score, member: `${id} ${owner}` });
  }

  /** Removes a job (canceled while it waited). */
  remove(id: string): void {
    this.#jobs.delete(id);
  }

  /** Takes up to `count` jobs in fair order. */
  pop(count: number): string[] {
    const order = this.#ordered().slice(0, count);
    for (const job of order) {
      this.#jobs.delete(job.id);
      this.#clock = job.score;
      if ((this.#next.get(job.owner) ?? 0) <= job.score + 1) this.#next.delete(job.owner);
    }
    return order.map((job) => job.id);
  }

  /** How many jobs come before this one (null when it does not wait here). */
  rank(id: string): number | null {
    if (!this.#jobs.has(id)) return null;
    return this.#ordered().findIndex((job) => job.id === id);
  }

  #ordered(): Waiting[] {
    return [...this.#jobs.values()].sort((a, b) =>
      a.score - b.score || (a.member < b.member ? -1 : a.member > b.member ? 1 : 0)
    );
  }
}
