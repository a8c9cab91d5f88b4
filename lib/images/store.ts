/**
 * The image store seam. Without one (`IMAGE_STORE_URL` unset) a job's images stay inside its record in
 * the broker, as before: the job hash in Redis (TCP, Upstash, partitions, Cluster) or the in-memory
 * broker's record. With one, the worker writes each image as an object before the job's terminal write,
 * which then records only the objects' keys, media types and sizes: S3-compatible (s3_store.ts) or in
 * memory (memory_store.ts, one process).
 */
import { BrokerUnavailableError } from "../errors.ts";
import type { ImageObject } from "../queue/types.ts";

export type { ImageObject };

/** Options of one store request. */
export interface StoreRequestOptions {
  signal?: AbortSignal;
}

/** An object store for images: S3-compatible, or in memory. */
export interface ImageStore {
  readonly kind: "s3" | "memory";
  /** The key prefix every object of this deployment goes under ("" or ending in "/"). */
  readonly prefix: string;
  /** The origin of the store's presigned URLs (absent in memory). */
  readonly origin?: string;
  /** Writes one object (replacing any object of that key). */
  put(
    key: string,
    bytes: Uint8Array,
    mimeType: string,
    options?: StoreRequestOptions,
  ): Promise<void>;
  /** Reads one object; null when there is none. */
  get(key: string, options?: StoreRequestOptions): Promise<Uint8Array | null>;
  /** The keys of the objects under `prefix` (at most `limit`). */
  list(prefix: string, limit?: number): Promise<string[]>;
  /** Deletes these objects (missing ones are no error). */
  delete(keys: string[]): Promise<void>;
  /** A URL that reads the object without credentials for `expiresSec` seconds; absent in memory. */
  presign?(key: string, expiresSec: number): Promise<string>;
}

/** The store did not answer, answered an error, or took too long: worth another attempt later. */
export class ImageStoreUnavailableError extends BrokerUnavailableError {
  override name = "ImageStoreUnavailableError";
}

/** What `IMAGE_STORE_URL` names: a bucket and a key prefix (`s3://`), or the in-memory store. */
export type StoreLocation = { kind: "s3"; bucket: string; prefix: string } | {
  kind: "memory";
  prefix: string;
};

const S3_URL = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

/** Reads `IMAGE_STORE_URL`; null when it is not `s3://<bucket>[/<prefix>]` or `memory://[<prefix>]`. */
export function parseStoreUrl(url: string): StoreLocation | null {
  if (url.startsWith("memory://")) {
    const prefix = cleanPrefix(url.slice("memory://".length));
    return prefix === null ? null : { kind: "memory", prefix };
  }
  const match = S3_URL.exec(url);
  if (!match || match[1].includes("..")) return null;
  const prefix = cleanPrefix(match[2] ?? "");
  return prefix === null ? null : { kind: "s3", bucket: match[1], prefix };
}

/** A prefix as keys start with it: "" or "a/b/"; null when a segment is empty, "." or "..". */
function cleanPrefix(raw: string): string | null {
  const trimmed = raw.replace(/\/+$/, "");
  if (trimmed === "") return "";
  const segments = trimmed.split("/");
  if (segments.some((s) => s === "" || s === "." || s === ".." || /[\s\\]/.test(s))) return null;
  return `${trimmed}/`;
}

const EXTENSIONS: Record<string, string> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/webp": "webp",
  "image/gif": "gif",
};

/**
 * The folder of a job's objects: `<prefix><job id>/`. A job id made only of dots (a valid id) would be a
 * dot segment that URLs collapse, so it is written with a `~` first (no job id holds `~`).
 */
export function jobFolder(prefix: string, jobId: string): string {
  return `${prefix}${/^\.+$/.test(jobId) ? `~${jobId}` : jobId}/`;
}

/**
 * The key of one image of one attempt: `<prefix><job id>/<attempt>/<index>.<ext>`. The attempt is the
 * job's count once start() counted this run (a takeover counts too), so two runs of a job never write
 * the same key, and the terminal write, fenced by the lease, records only its own run's keys.
 */
export function objectKey(
  prefix: string,
  { jobId, attempt, index, mimeType }: {
    jobId: string;
    attempt: number;
    index: number;
    mimeType: string;
  },
): string {
  const ext = EXTENSIONS[mimeType] ?? "bin";
  return `${jobFolder(prefix, jobId)}${attempt}/${index}.${ext}`;
}
