/**
 * A job's images in the image store: the worker's write of a run's images before the terminal write,
 * the clean-up of runs that never ended the job, and the reads (through the process's cache) and
 * presigned URLs of the readers.
 */
import type { ImageObject, JobRecord, Outcome } from "../queue/types.ts";
import { ImageCache } from "./image_cache.ts";
import { type ImageStore, jobFolder, objectKey } from "./store.ts";

/** A success as the provider gave it (the bytes), before or after its objects were written. */
export type Success = Extract<Outcome, { type: "succeeded" }>;

/** Longest life of a presigned URL the service hands out (15 minutes, as a ticket). */
export const MAX_URL_SECONDS = 900;

/** The image store as the worker, the broker's readers and the image routes use it. */
export class JobImages {
  readonly store: ImageStore;
  #cache: ImageCache;

  constructor(store: ImageStore, { cache = new ImageCache() }: { cache?: ImageCache } = {}) {
    this.store = store;
    this.#cache = cache;
  }

  /**
   * Writes every image of this run of the job (its attempt fixes the keys) and returns the outcome
   * that records the objects; throws the store's error, after deleting what this call wrote.
   */
  async keep(job: JobRecord, outcome: Success, signal?: AbortSignal): Promise<Success> {
    const images: { bytes: Uint8Array; mimeType: string; base64?: string }[] = [
      { bytes: outcome.image, mimeType: outcome.mimeType, base64: outcome.base64 },
      ...(outcome.more ?? []).map((extra) => ({ bytes: extra.image, mimeType: extra.mimeType })),
    ];
    const objects: ImageObject[] = images.map(({ bytes, mimeType }, index) => ({
      key: objectKey(this.store.prefix, { jobId: job.id, attempt: job.attempts, index, mimeType }),
      mimeType,
      size: bytes.byteLength,
    }));
    const writes = await Promise.allSettled(
      images.map(({ bytes, mimeType }, k) =>
        this.store.put(objects[k].key, bytes, mimeType, { signal })
      ),
    );
    const failed = writes.find((w): w is PromiseRejectedResult => w.status === "rejected");
    if (failed) {
      await this.discard(objects).catch(() => {});
      throw failed.reason;
    }
    images.forEach(({ bytes, base64 }, k) =>
      this.#cache.keep(objects[k].key, base64 ?? bytes.toBase64())
    );
    return { ...outcome, objects };
  }

  /** Deletes objects that no job records (a run whose terminal write did not end the job). */
  async discard(objects: ImageObject[]): Promise<void> {
    const keys = objects.map((o) => o.key);
    this.#cache.drop(keys);
    if (keys.length > 0) await this.store.delete(keys);
  }

  /**
   * Deletes the objects of the job's other runs (a run that crashed between its write and the job's
   * end), keeping `kept`; returns how many went.
   */
  async dropEarlier(jobId: string, kept: ImageObject[] = []): Promise<number> {
    const keep = new Set(kept.map((o) => o.key));
    const found = await this.store.list(jobFolder(this.store.prefix, jobId));
    const stale = found.filter((key) => !keep.has(key));
    this.#cache.drop(stale);
    if (stale.length > 0) await this.store.delete(stale);
    return stale.length;
  }

  /** One object as base64 (once per process however many ask); null when it is missing. */
  read(key: string): Promise<string | null> {
    return this.#cache.get(key, (k) => this.store.get(k));
  }

  /** A presigned URL of the job's `index`-th image; null when the store cannot make one. */
  async url(job: JobRecord, index: number, expiresSec = MAX_URL_SECONDS): Promise<string | null> {
    const object = job.objects?.[index];
    if (!object || !this.store.presign) return null;
    return await this.store.presign(object.key, Math.min(expiresSec, MAX_URL_SECONDS));
  }
}
