/** Webhook test helpers: a receiver on 127.0.0.1, an awaitable inbox, and an outbox that reports calls. */
import type { MemoryBroker } from "../../../lib/queue/memory.ts";
import type { WebhookOutbox, WebhookTask } from "../../../lib/queue/types.ts";

/** A bound no healthy run gets near; it only turns a hang into a failure, it times nothing. */
export const GENEROUS_MS = 5_000;

/** A secret in the Standard Webhooks format. */
export const SECRET = `whsec_${btoa("a test secret of thirty-two bytes")}`;

/** The test CA (PEM) and the certificate and key of `hooks.test` it signed (valid until 2126). */
export function tlsFixture(): { ca: string; cert: string; key: string } {
  const read = (name: string) =>
    Deno.readTextFileSync(new URL(`./fixtures/${name}`, import.meta.url));
  return { ca: read("ca.pem"), cert: read("hooks_test_cert.pem"), key: read("hooks_test_key.pem") };
}

/** Values pushed by one side and awaited, in order, by the other. */
export class Inbox<T> {
  #items: T[] = [];
  #waiters: ((item: T) => void)[] = [];
  /** Everything pushed so far. */
  readonly all: T[] = [];

  push(item: T): void {
    this.all.push(item);
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  /** The next item (in push order); rejects after `withinMs` so that a bug fails instead of hanging. */
  next(what = "an item", withinMs = GENEROUS_MS): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`Cannot see ${what}: nothing came in ${withinMs} ms`));
      }, withinMs);
      const waiter = (item: T) => {
        clearTimeout(timer);
        resolve(item);
      };
      this.#waiters.push(waiter);
    });
  }
}

/** A request a receiver got. */
export interface Received {
  url: string;
  headers: Headers;
  body: string;
}

/** A webhook receiver on 127.0.0.1 answering with `respond(request number, request)`. */
export interface Receiver {
  port: number;
  /** Its URL on 127.0.0.1 with `path`. */
  url(path?: string): string;
  requests: Inbox<Received>;
  close(): Promise<void>;
}

/** Starts a receiver; with `tls`, it serves https with the `hooks.test` certificate. */
export function startReceiver(
  respond: (n: number, request: Received) => Response | Promise<Response> = () =>
    new Response("ok"),
  { tls = false }: { tls?: boolean } = {},
): Receiver {
  const requests = new Inbox<Received>();
  const stop = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen() {},
    ...(tls ? { cert: tlsFixture().cert, key: tlsFixture().key } : {}),
  }, async (request) => {
    const received = { url: request.url, headers: request.headers, body: await request.text() };
    const n = requests.all.length;
    requests.push(received);
    return await respond(n, received);
  });
  const port = server.addr.port;
  return {
    port,
    url: (path = "/hook") => `${tls ? "https" : "http"}://127.0.0.1:${port}${path}`,
    requests,
    async close() {
      stop.abort();
      await server.finished;
    },
  };
}

/** An outbox call the dispatcher made. */
export interface OutboxCall {
  op: "done" | "retry" | "stop";
  jobId: string;
  task?: WebhookTask;
  at?: number;
}

/** The memory broker as the dispatcher sees it, with its outbox calls reported. */
export function recordingBroker(memory: MemoryBroker) {
  const calls = new Inbox<OutboxCall>();
  const webhooks: WebhookOutbox = {
    take: (now, limit, leaseMs) => memory.webhooks.take(now, limit, leaseMs),
    async done(task) {
      await memory.webhooks.done(task);
      calls.push({ op: "done", jobId: task.jobId, task });
    },
    async retry(task, at) {
      await memory.webhooks.retry(task, at);
      calls.push({ op: "retry", jobId: task.jobId, task, at });
    },
    async stop(jobId) {
      await memory.webhooks.stop(jobId);
      calls.push({ op: "stop", jobId });
    },
  };
  const broker = {
    get: memory.get.bind(memory),
    events: memory.events.bind(memory),
    webhooks,
  };
  return { broker, calls };
}
