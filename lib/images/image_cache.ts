/**
 * A process's images read from the store, by object key: one read however many callers want an object
 * at once (single flight), and recent objects kept, bounded in bytes, so that every subscriber of a
 * success (relay, replays, GETs) costs the store one read per process. An object never changes under its
 * key (a key names one run of one job), so nothing kept goes stale.
 */

/** Reads an object's bytes; null when it is missing. */
export type ObjectReader = (key: string) => Promise<Uint8Array | null>;

/** Recent images by object key, base64, least recently used going first. */
export class ImageCache {
  #maxBytes: number;
  #bytes = 0;
  #kept = new Map<string, string>();
  #reading = new Map<string, Promise<string | null>>();

  constructor({ maxBytes = 32 * 1024 * 1024 }: { maxBytes?: number } = {}) {
    if (!(maxBytes >= 0)) throw new RangeError("Cannot keep images: maxBytes must be at least 0");
    this.#maxBytes = maxBytes;
  }

  /** The object as base64: kept, or being read, or read now with `read` (a failure is not kept). */
  get(key: string, read: ObjectReader): Promise<string | null> {
    const kept = this.#kept.get(key);
    if (kept !== undefined) {
      this.#kept.delete(key); // most recently used goes last
      this.#kept.set(key, kept);
      return Promise.resolve(kept);
    }
    let reading = this.#reading.get(key);
    if (!reading) {
      reading = read(key).then((bytes) => {
        if (bytes === null) return null;
        const base64 = bytes.toBase64();
        this.keep(key, base64);
        return base64;
      }).finally(() => this.#reading.delete(key));
      this.#reading.set(key, reading);
    }
    return reading;
  }

  /** Keeps an object this process just wrote (so its own readers need no read). */
  keep(key: string, base64: string): void {
    if (base64.length > this.#maxBytes) return;
    const old = this.#kept.get(key);
    if (old !== undefined) this.#bytes -= old.length;
    this.#kept.delete(key);
    this.#kept.set(key, base64);
    this.#bytes += base64.length;
    for (const [oldest, value] of this.#kept) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#kept.delete(oldest);
      this.#bytes -= value.length;
    }
  }

  /** Forgets objects (deleted from the store). */
  drop(keys: string[]): void {
    for (const key of keys) {
      const old = this.#kept.get(key);
      if (old === undefined) continue;
      this.#kept.delete(key);
      this.#bytes -= old.length;
    }
  }

  /** Bytes (of base64) kept now. */
  get bytes(): number {
    return this.#bytes;
  }
}
