/** The image store the configuration names (`IMAGE_STORE_URL`), or none: images stay in the broker. */
import type { Config } from "../config.ts";
import { JobImages } from "./job_images.ts";
import { createMemoryImageStore } from "./memory_store.ts";
import { createS3Store } from "./s3_store.ts";
import { parseStoreUrl } from "./store.ts";

/** Builds the configured image store and its readers' cache; null without `IMAGE_STORE_URL`. */
export function createJobImages(config: Config): JobImages | null {
  const location = config.IMAGE_STORE_URL ? parseStoreUrl(config.IMAGE_STORE_URL) : null;
  if (!location) return null;
  if (location.kind === "memory") {
    // Written just before the job's end, an object outlives the job's hash by this minute.
    const ttlMs = (config.JOB_TTL_SECONDS + 60) * 1000;
    return new JobImages(createMemoryImageStore({ prefix: location.prefix, ttlMs }));
  }
  return new JobImages(createS3Store({
    bucket: location.bucket,
    prefix: location.prefix,
    endpoint: config.S3_ENDPOINT,
    region: config.S3_REGION,
    accessKeyId: config.AWS_ACCESS_KEY_ID!,
    secretAccessKey: config.AWS_SECRET_ACCESS_KEY!,
    timeoutMs: config.IMAGE_STORE_TIMEOUT_MS,
    maxBytes: config.DOWNLOAD_MAX_BYTES,
  }));
}
