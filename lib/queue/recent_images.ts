/**
 * The images this process is storing or stored a moment ago, kept briefly so that its own relay, which
 * hears of the success on the feed, builds the notification without reading the image back from Redis.
 * An image is offered only once its write is known to have ended the job: the end is a compare-and-set,
 * so the success the relay heard of is then this very write, and the image never changes after it.
 */

interface Kept {
  image: Uint8Array;
  /** The same image as base64, when the writer had it (else made on first use). */
  base64?: string;
  at: number;
  /** Resolves with true once the write ended the job, false when it did not (or failed). */
  stored: Promise<boolean>;
}

/** A few seconds' worth of images, bounded in bytes and in age; oldest go first. */
export class RecentImages {
  #maxBytes: number;
  #maxAgeMs: number;
  #bytes = 0;
  /** In insertion order, which is age order. */
  #items = new Map<string, Kept>();

  constructor({ maxBytes = 8 * 1024 * 1024, maxAgeMs = 10_000 } = {}) {
    this.#maxBytes = maxBytes;
    this.#maxAgeMs = maxAgeMs;
  }

  /**
   * Keeps the image that is about to be written for `jobId` (the feed may show the success before the
   * write's answer arrives); call the returned function with whether the write ended the job.
   */
  expect(
    jobId: string,
    image: Uint8Array,
    { base64, now = Date.now() }: { base64?: string; now?: number } = {},
  ): (stored: boolean) => void {
    const { promise, resolve } = Promise.withResolvers<boolean>();
    this.#drop(jobId);
    if (image.byteLength <= this.#maxBytes) {
      this.#items.set(jobId, { image, base64, at: now, stored: promise });
      this.#bytes += image.byteLength;
      this.#evict(now);
    }
    return (stored) => {
      resolve(stored);
      const kept = this.#items.get(jobId);
      if (!stored && kept?.stored === promise) this.#drop(jobId);
    };
  }

  /** The image this process stored for `jobId`, base64 (waiting for a write under way), or undefined. */
  async get(jobId: string, now = Date.now()): Promise<string | undefined> {
    this.#evict(now);
    const kept = this.#items.get(jobId);
    if (!kept || !await kept.stored) return undefined;
    return kept.base64 ??= kept.image.toBase64();
  }

  /** Bytes kept now. */
  get bytes(): number {
    return this.#bytes;
  }

  #drop(jobId: string): void {
    const kept = this.#items.get(jobId);
    if (!kept) return;
    this.#items.delete(jobId);
    this.#bytes -= kept.image.byteLength;
  }

  #evict(now: number): void {
    for (const [jobId, kept] of this.#items) {
      if (this.#bytes <= this.#maxBytes && now - kept.at < this.#maxAgeMs) break;
      this.#drop(jobId);
    }
  }
}
