/** The in-memory broker's per-owner state for submit limits: rate windows and sets of active jobs. */

/** Per-owner submission windows and active-job sets; pruned so that they do not grow without bound. */
export class OwnerLimits {
  #rates = new Map<string, { count: number; resetAt: number }>();
  #active = new Map<string, Set<string>>();
  #ended: (jobId: string) => boolean;

  /** `ended(id)` tells whether a job has ended or is gone (then it no longer counts as active). */
  constructor(ended: (jobId: string) => boolean) {
    this.#ended = ended;
  }

  /** Counts a submission in the owner's one-minute window; seconds to wait when over `perMinute`, else 0. */
  rate(owner: string, perMinute: number, now: number): number {
    const window = this.#rates.get(owner);
    const slot = !window || window.resetAt <= now ? { count: 0, resetAt: now + 60_000 } : window;
    slot.count += 1;
    this.#rates.set(owner, slot);
    return slot.count > perMinute ? Math.max(1, Math.ceil((slot.resetAt - now) / 1000)) : 0;
  }

  /** True when the owner has `max` active jobs, counting again without the ended ones at the cap. */
  busy(owner: string, max: number): boolean {
    const active = this.#active.get(owner);
    if (!active || active.size < max) return false;
    this.#dropEnded(owner, active);
    return active.size >= max;
  }

  /** Counts a new active job of the owner. */
  add(owner: string, jobId: string): void {
    this.#active.set(owner, (this.#active.get(owner) ?? new Set()).add(jobId));
  }

  /** Drops expired rate windows, the ended jobs of active sets and the sets left empty. */
  prune(now: number): void {
    for (const [owner, window] of this.#rates) if (window.resetAt <= now) this.#rates.delete(owner);
    for (const [owner, active] of this.#active) this.#dropEnded(owner, active);
  }

  /** How many rate windows and active sets are kept. */
  get sizes(): { rateWindows: number; activeSets: number } {
    return { rateWindows: this.#rates.size, activeSets: this.#active.size };
  }

  #dropEnded(owner: string, active: Set<string>): void {
    for (const id of active) if (this.#ended(id)) active.delete(id);
    if (active.size === 0) this.#active.delete(owner);
  }
}
