/**
 * A bounded cache of credentials that already verified: clients reuse one JWT for many requests, and
 * re-checking its HMAC or signature each time is the most expensive step of a submit. An entry lives until
 * the credential's expiry but never more than a few minutes, and entries verified with a key that left
 * the key set can be dropped at once.
 */

/** Longest an entry is trusted without checking the credential again. */
export const DEFAULT_MAX_AGE_MS = 5 * 60_000;

interface Entry<T> {
  value: T;
  expiresAt: number;
  /** Which key verified the credential (a JWKS `kid`), when that matters. */
  tag?: string;
}

/** Maps a credential string to what it proved, until min(its `exp`, now + maxAgeMs); oldest go first. */
export class VerifiedCache<T> {
  #max: number;
  #maxAgeMs: number;
  #now: () => number;
  #entries = new Map<string, Entry<T>>();

  constructor(
    { max = 10_000, maxAgeMs = DEFAULT_MAX_AGE_MS, now = Date.now }: {
      max?: number;
      maxAgeMs?: number;
      now?: () => number;
    } = {},
  ) {
    if (max < 1) throw new RangeError("Cannot create the cache: max must be >= 1");
    if (!(maxAgeMs > 0)) throw new RangeError("Cannot create the cache: maxAgeMs must be > 0");
    this.#max = max;
    this.#maxAgeMs = maxAgeMs;
    this.#now = now;
  }

  /** Number of entries held (expired ones included until they are looked up or pushed out). */
  get size(): number {
    return this.#entries.size;
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

  /** Remembers a verified credential until `expiresAt` (epoch ms) or maxAgeMs from now, if sooner. */
  set(key: string, value: T, expiresAt: number, tag?: string): void {
    const now = this.#now();
    if (expiresAt <= now) return;
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(key, { value, expiresAt: Math.min(expiresAt, now + this.#maxAgeMs), tag });
  }

  /** Drops every tagged entry whose tag `keep` refuses (untagged entries stay). */
  retainTags(keep: (tag: string) => boolean): void {
    for (const [key, entry] of this.#entries) {
      if (entry.tag !== undefined && !keep(entry.tag)) this.#entries.delete(key);
    }
  }
}
