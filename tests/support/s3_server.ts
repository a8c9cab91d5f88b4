/**
 * A real S3-compatible server for tests: `s3rver` (npm, run with node) on a free loopback port with a
 * temp dir, and in front of it a small HTTP proxy that counts requests and can refuse or delay them.
 */

/** The s3rver version the tests install. */
const S3RVER = "s3rver@3.7.1";
/** Where it is installed (outside the repository, reused across runs). */
const INSTALL_DIR = `${
  Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`
}/image-jobs/s3rver`;
const BIN = `${INSTALL_DIR}/node_modules/s3rver/bin/s3rver.js`;
const READY_TIMEOUT_MS = 15_000;

/** Credentials s3rver accepts by default. */
export const S3_KEY = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** A request the proxy passed on (or refused). */
export interface S3Request {
  method: string;
  /** The path, decoded (`/<bucket>/<key>`). */
  path: string;
  /** Bytes of the request's body and of the answer's, by their Content-Length (0 when unknown). */
  bytesIn: number;
  bytesOut: number;
}

/** A running s3rver and its proxy. */
export interface S3Server {
  /** The proxy's endpoint (`http://127.0.0.1:PORT`): counted, and faults injectable. */
  readonly url: string;
  /** s3rver's own endpoint: down when it is killed. */
  readonly directUrl: string;
  readonly bucket: string;
  readonly pid: number;
  /** Requests through the proxy, in order. */
  readonly requests: S3Request[];
  /**
   * How the proxy answers: pass on, refuse with 503, hold each request `delayMs` before passing it on,
   * or pass PUTs on and hold their answers `holdPutAnswerMs` (the object is written, its writer waits).
   */
  fault: { refuse: boolean; delayMs: number; holdPutAnswerMs?: number };
  /** GETs of one object key through the proxy. */
  gets(key: string): number;
  /** The object keys in the bucket (read from s3rver directly). */
  keys(prefix?: string): Promise<string[]>;
  /** Kills s3rver by pid and waits until it exited. */
  kill(): Promise<void>;
  /** Starts s3rver again on the same port and dir. */
  restart(): Promise<void>;
  /** Stops both and removes the temp dir; idempotent. */
  stop(): Promise<void>;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

let ensured: Promise<void> | undefined;

/** Installs s3rver with npm (into the user's cache dir) when it is missing. */
export function ensureS3rver(): Promise<void> {
  ensured ??= (async () => {
    if (await exists(BIN)) return;
    await Deno.mkdir(INSTALL_DIR, { recursive: true });
    const args = ["install", "--prefix", INSTALL_DIR, "--no-audit", "--no-fund", S3RVER];
    let ok = false;
    try {
      ok = (await new Deno.Command("npm", { args, stdin: "null" }).spawn().status).success;
    } catch {
      ok = false;
    }
    if (!ok || !(await exists(BIN))) {
      throw new Error(
        `Cannot start s3rver: it is not installed; run \`npm install --prefix ${INSTALL_DIR} ${S3RVER}\``,
      );
    }
  })();
  ensured.catch(() => ensured = undefined);
  return ensured;
}

function freePort(): number {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

class TestS3 implements S3Server {
  readonly bucket: string;
  readonly requests: S3Request[] = [];
  fault: S3Server["fault"] = { refuse: false, delayMs: 0 };
  #port: number;
  #dir: string;
  #child: Deno.ChildProcess | undefined;
  #proxy: Deno.HttpServer | undefined;
  #stopping: Promise<void> | undefined;
  #stop = new AbortController();

  constructor(port: number, dir: string, bucket: string) {
    this.#port = port;
    this.#dir = dir;
    this.bucket = bucket;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#proxy!.addr as Deno.NetAddr).port}`;
  }

  get directUrl(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get pid(): number {
    return this.#child!.pid;
  }

  gets(key: string): number {
    const path = `/${this.bucket}/${key}`;
    return this.requests.filter((r) => r.method === "GET" && r.path === path).length;
  }

  async keys(prefix = ""): Promise<string[]> {
    const url = `${this.directUrl}/${this.bucket}/?list-type=2&prefix=${
      encodeURIComponent(prefix)
    }`;
    const xml = await (await fetch(url)).text();
    return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1].replaceAll("&amp;", "&"));
  }

  async start(): Promise<void> {
    const args = [BIN, "-d", this.#dir, "-a", "127.0.0.1", "-p", String(this.#port), "--silent"];
    args.push("--configure-bucket", this.bucket);
    this.#child = new Deno.Command("node", { args, stdin: "null", stdout: "null", stderr: "null" })
      .spawn();
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      try {
        const res = await fetch(`${this.directUrl}/${this.bucket}/?list-type=2&max-keys=1`);
        await res.body?.cancel();
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await this.kill();
    throw new Error(
      `Cannot start s3rver on port ${this.#port}: no answer in ${READY_TIMEOUT_MS} ms`,
    );
  }

  serveProxy(): void {
    this.#proxy = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        const url = new URL(req.url);
        const seen: S3Request = {
          method: req.method,
          path: decodeURIComponent(url.pathname),
          bytesIn: Number(req.headers.get("Content-Length") ?? 0) || 0,
          bytesOut: 0,
        };
        this.requests.push(seen);
        if (this.fault.delayMs > 0) await new Promise((r) => setTimeout(r, this.fault.delayMs));
        if (this.fault.refuse) {
          return new Response("<Error><Code>SlowDown</Code></Error>", {
            status: 503,
          });
        }
        try {
          // s3rver checks the access key and the expiry, not the signature: the Host change is fine.
          const res = await fetch(`${this.directUrl}${url.pathname}${url.search}`, {
            method: req.method,
            headers: req.headers,
            body: req.body,
            redirect: "manual",
          });
          seen.bytesOut = Number(res.headers.get("Content-Length") ?? 0) || 0;
          const hold = req.method === "PUT" ? this.fault.holdPutAnswerMs ?? 0 : 0;
          if (hold > 0) await this.#hold(hold, req.signal);
          return new Response(res.body, { status: res.status, headers: res.headers });
        } catch {
          return new Response("<Error><Code>BadGateway</Code></Error>", { status: 502 });
        }
      },
    );
  }

  /** Waits `ms`, or until the client went away or the proxy stops. */
  #hold(ms: number, client: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, ms);
      for (const signal of [client, this.#stop.signal]) {
        signal.addEventListener("abort", done, { once: true });
      }
    });
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch {
      // It exited already.
    }
    await child.status;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.kill();
      this.#stop.abort();
      await this.#proxy?.shutdown();
      await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    })();
    return this.#stopping;
  }
}

/** Starts s3rver with one bucket on a free loopback port and a fresh temp dir, and its proxy. */
export async function startS3(bucket = "images"): Promise<S3Server> {
  await ensureS3rver();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await Deno.makeTempDir({ prefix: "s3rver_test_" });
    const server = new TestS3(freePort(), dir, bucket);
    try {
      await server.start();
      server.serveProxy();
      return server;
    } catch (error) {
      lastError = error;
      await server.stop();
    }
  }
  throw lastError;
}
