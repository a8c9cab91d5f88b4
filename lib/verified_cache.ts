/**
 * A bounded cache of credentials that already verified, until their own expiry: clients reuse one JWT for
 * many requests, and re-checking its HMAC or signature each time is the most expensive step of a submit.
 */

/** Maps a credential string to what it proved, until the credential's `exp`; oldest entries go first. */
export class VerifiedCache<T> {
  #max: number;
  #now: () => number;
  #entries = new Map<string, { value: T; expiresAt: number }>();

  constructor({ max = 10_000, now = Date.now }: { max?: number; now?: () => number } = {}) {
    if (max < 1) throw new RangeError("Cannot create the cache: max must be >= 1");
    this.#max = max;
    this.#now = now;
  }

  /** What the credential proved, or undefined when unknown or expired. */
  get(key: string): T | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** Remembers a verified credential until `expiresAt` (epoch ms). */
  set(key: string, value: T, expiresAt: number): void {
    if (expiresAt <= this.#now()) return;
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(key, { value, expiresAt });
  }
}
