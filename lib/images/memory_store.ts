// deno-lint-ignore-file require-await
/**
 * The in-memory image store (`IMAGE_STORE_URL=memory://`): objects in a Map of this process, each kept
 * for a fixed time (the job's lifetime) as a bucket lifecycle rule would. For one process and for tests.
 */
import type { ImageStore } from "./store.ts";

/** Options of the in-memory store. */
export interface MemoryStoreOptions {
  prefix?: string;
  /** How long an object lives after its write (default one day). */
  ttlMs?: number;
  now?: () => number;
}

/** Builds the in-memory image store. */
export function createMemoryImageStore(options: MemoryStoreOptions = {}): ImageStore {
  return new MemoryImageStore(options);
}

class MemoryImageStore implements ImageStore {
  readonly kind = "memory" as const;
  readonly prefix: string;
  #ttlMs: number;
  #now: () => number;
  /** In write order, which is expiry order. */
  #objects = new Map<string, { bytes: Uint8Array; until: number }>();

  constructor({ prefix = "", ttlMs = 86_400_000, now = Date.now }: MemoryStoreOptions) {
    this.prefix = prefix;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  #expire(): void {
    const now = this.#now();
    for (const [key, object] of this.#objects) {
      if (object.until > now) break;
      this.#objects.delete(key);
    }
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    this.#expire();
    this.#objects.delete(key);
    this.#objects.set(key, { bytes: bytes.slice(), until: this.#now() + this.#ttlMs });
  }

  async get(key: string): Promise<Uint8Array | null> {
    this.#expire();
    return this.#objects.get(key)?.bytes.slice() ?? null;
  }

  async list(prefix: string, limit = 1000): Promise<string[]> {
    this.#expire();
    return [...this.#objects.keys()].filter((key) => key.startsWith(prefix)).sort().slice(0, limit);
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) this.#objects.delete(key);
  }
}
