/**
 * The provider's pace in one process (the in-memory broker's): the same GCRA with additive increase
 * and multiplicative decrease that the Redis scripts run (lib/pace/lua.ts), on a clock passed in.
 */
import { PACE } from "./lua.ts";

/** What a take found: tokens granted, ms until the next one, and the pace (0: unpaced). */
export interface Take {
  granted: number;
  waitMs: number;
  rate: number;
}

/** A pace of provider requests: `cap` requests/s (0: learned from 429s; -1: never paced). */
export class Pacer {
  readonly cap: number;
  #tat = 0;
  #until = 0;
  #rate: number | null = null;
  #cut = 0;
  #windowStart = 0;
  #windowCount = 0;
  #previousCount = 0;

  constructor(cap: number) {
    if (!(cap >= 0 || cap === -1)) throw new RangeError("Cannot pace: cap must be >= 0 or -1");
    this.cap = cap;
  }

  /** The pace now in requests/s (0: unpaced). */
  rate(now: number): number {
    if (this.cap < 0) return 0;
    if (this.#rate === null) return this.cap;
    if (this.cap === 0 && now - this.#cut >= PACE.resetMs) return 0;
    const grown = this.#rate + this.#rate * PACE.step * Math.max(0, now - this.#cut) / 1000;
    return this.cap > 0 && grown >= this.cap ? this.cap : grown;
  }

  /** Takes up to `want` turns now. */
  take(want: number, now: number): Take {
    if (this.cap < 0) return { granted: want, waitMs: 0, rate: 0 };
    const rate = this.rate(now);
    if (now < this.#until) return { granted: 0, waitMs: this.#until - now, rate };
    if (rate <= 0) {
      if (now - this.#windowStart >= 1000) {
        this.#previousCount = now - this.#windowStart < 2000 ? this.#windowCount : 0;
        this.#windowStart = now;
        this.#windowCount = 0;
      }
      this.#windowCount += want;
      return { granted: want, waitMs: 0, rate: 0 };
    }
    const interval = 1000 / rate;
    const slack = Math.max(1, Math.floor(rate * PACE.burstSec) - 1) * interval;
    let tat = Math.max(this.#tat, now);
    let granted = 0;
    while (granted < want && tat <= now + slack) {
      tat += interval;
      granted += 1;
    }
    this.#tat = tat;
    return { granted, waitMs: Math.max(0, Math.ceil(tat - slack - now)), rate };
  }

  /** Ms until a turn, without taking one. */
  wait(now: number): number {
    if (this.cap < 0) return 0;
    if (now < this.#until) return this.#until - now;
    const rate = this.rate(now);
    if (rate <= 0) return 0;
    const slack = Math.max(1, Math.floor(rate * PACE.burstSec) - 1) * 1000 / rate;
    return Math.max(0, Math.ceil(this.#tat - slack - now));
  }

  /** A provider 429: no turn for `retryAfterMs`, and the pace cut once per burst of 429s. */
  throttle(retryAfterMs: number, now: number): number {
    if (this.cap < 0) return 0;
    this.#until = Math.max(this.#until, now + Math.max(0, retryAfterMs));
    if (now - this.#cut < Math.max(1000, retryAfterMs)) return this.rate(now);
    let rate = this.rate(now);
    if (rate <= 0) rate = Math.max(1, this.#windowCount, this.#previousCount);
    this.#rate = Math.max(PACE.floor, rate * PACE.cut);
    this.#cut = this.#until;
    return this.#rate;
  }
}
