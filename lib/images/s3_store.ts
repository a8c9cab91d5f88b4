/**
 * The S3-compatible image store (AWS S3, Cloudflare R2, MinIO, s3rver), over fetch with SigV4 signing by
 * `aws4fetch`: a few kilobytes with no Node built-ins, so it runs the same on Deno and Deno Deploy.
 */
import { AwsClient } from "aws4fetch";
import { type ImageStore, ImageStoreUnavailableError, type StoreRequestOptions } from "./store.ts";

/** Where the bucket is and how to sign for it. */
export interface S3StoreOptions {
  bucket: string;
  /** Key prefix ("" or ending in "/"). */
  prefix: string;
  /** `S3_ENDPOINT` (R2, MinIO, …): path-style requests to it; absent: AWS, virtual-hosted style. */
  endpoint?: string;
  /** `S3_REGION`; `auto` (R2) signs as `us-east-1` against AWS itself. */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Deadline of one request (a slow store is a failed request, retried by the caller). */
  timeoutMs?: number;
  /** Largest object read back (a bigger one is an error, never buffered whole). */
  maxBytes?: number;
}

const XML_ENTITIES: Record<string, string> = {
  "&amp;": "&",
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&apos;": "'",
};

/** Builds the S3-compatible store. */
export function createS3Store(options: S3StoreOptions): ImageStore {
  return new S3Store(options);
}

class S3Store implements ImageStore {
  readonly kind = "s3" as const;
  readonly prefix: string;
  readonly origin: string;
  #client: AwsClient;
  #base: string;
  #timeoutMs: number;
  #maxBytes: number;

  constructor(options: S3StoreOptions) {
    this.prefix = options.prefix;
    const awsRegion = options.region === "auto" && !options.endpoint ? "us-east-1" : options.region;
    this.#client = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      service: "s3",
      region: awsRegion,
    });
    this.#base = options.endpoint
      ? `${options.endpoint.replace(/\/+$/, "")}/${options.bucket}`
      : awsRegion === "us-east-1"
      ? `https://${options.bucket}.s3.amazonaws.com`
      : `https://${options.bucket}.s3.${awsRegion}.amazonaws.com`;
    this.origin = new URL(this.#base).origin;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  }

  #url(key: string): string {
    return `${this.#base}/${key.split("/").map(encodeURIComponent).join("/")}`;
  }

  /** One signed request under the deadline; store faults become ImageStoreUnavailableError. */
  async #send(
    what: string,
    url: string,
    init: RequestInit,
    signal?: AbortSignal,
  ): Promise<Response> {
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    try {
      return await this.#client.fetch(url, {
        ...init,
        signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      const why = deadline.aborted ? `no answer in ${this.#timeoutMs} ms` : String(error);
      throw new ImageStoreUnavailableError(`Cannot ${what}: ${why}`, { cause: error });
    }
  }

  async #fail(what: string, res: Response): Promise<never> {
    const text = (await res.text().catch(() => "")).slice(0, 300);
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? "";
    throw new ImageStoreUnavailableError(
      `Cannot ${what}: the store answered ${res.status} ${code}`,
    );
  }

  async put(
    key: string,
    bytes: Uint8Array,
    mimeType: string,
    { signal }: StoreRequestOptions = {},
  ): Promise<void> {
    const what = `write image ${key}`;
    const res = await this.#send(what, this.#url(key), {
      method: "PUT",
      body: bytes as Uint8Array<ArrayBuffer>,
      headers: { "Content-Type": mimeType, "Content-Length": String(bytes.byteLength) },
    }, signal);
    if (!res.ok) return await this.#fail(what, res);
    await res.body?.cancel();
  }

  async get(key: string, { signal }: StoreRequestOptions = {}): Promise<Uint8Array | null> {
    const what = `read image ${key}`;
    const res = await this.#send(what, this.#url(key), { method: "GET" }, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) return await this.#fail(what, res);
    const length = Number(res.headers.get("Content-Length") ?? "0");
    if (length > this.#maxBytes) {
      await res.body?.cancel();
      throw new ImageStoreUnavailableError(`Cannot ${what}: ${length} bytes is over the cap`);
    }
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (error) {
      throw new ImageStoreUnavailableError(`Cannot ${what}: ${String(error)}`, { cause: error });
    }
  }

  async list(prefix: string, limit = 1000): Promise<string[]> {
    const url = new URL(`${this.#base}/`);
    url.searchParams.set("list-type", "2");
    url.searchParams.set("prefix", prefix);
    url.searchParams.set("max-keys", String(Math.max(1, Math.min(1000, limit))));
    const what = `list images under ${prefix}`;
    const res = await this.#send(what, url.toString(), { method: "GET" });
    if (!res.ok) return await this.#fail(what, res);
    const xml = await res.text();
    return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) =>
      m[1].replace(/&(amp|lt|gt|quot|apos);/g, (entity) => XML_ENTITIES[entity])
    );
  }

  async delete(keys: string[]): Promise<void> {
    // One DELETE per object: a job has at most 10, and it works on every S3-compatible store (the
    // multi-object POST ?delete needs Content-MD5 on some and is missing on others).
    await Promise.all(keys.map(async (key) => {
      const what = `delete image ${key}`;
      const res = await this.#send(what, this.#url(key), { method: "DELETE" });
      if (!res.ok && res.status !== 404) return await this.#fail(what, res);
      await res.body?.cancel();
    }));
  }

  async presign(key: string, expiresSec: number): Promise<string> {
    const url = new URL(this.#url(key));
    url.searchParams.set("X-Amz-Expires", String(Math.max(1, Math.floor(expiresSec))));
    const signed = await this.#client.sign(url.toString(), {
      method: "GET",
      aws: { signQuery: true },
    });
    return signed.url;
  }
}
