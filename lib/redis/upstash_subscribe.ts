/**
 * One long-lived Upstash REST subscription (`POST {url}/subscribe/<channel>`, answered with Server-Sent
 * Events `data: message,<channel>,<payload>`), reopened with backoff whenever it drops. Upstash bills one
 * command per subscribe and one per message it delivers, so a process holds one and keeps it.
 */

/** Options of a subscription. */
export interface UpstashSubscriptionOptions {
  /** The REST URL, `UPSTASH_REDIS_REST_URL`. */
  url: string;
  /** The REST token, `UPSTASH_REDIS_REST_TOKEN`. */
  token: string;
  /** The channel to listen to. */
  channel: string;
  /** Called with each message's payload. */
  onMessage(payload: string): void;
  /** Called each time the stream is open (again): messages sent while it was down are lost. */
  onOpen?(): void;
  /** Called when the stream drops, with why. */
  onDrop?(reason: string): void;
  /** First and longest pause before reopening a dropped stream; 250 ms and 30 s by default. */
  backoffMs?: number;
  backoffMaxMs?: number;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
}

/** An open-and-reopen subscription to one channel. */
export class UpstashSubscription {
  #o: UpstashSubscriptionOptions;
  #stop = new AbortController();
  #live = false;
  #opens = 0;
  #loop: Promise<void>;
  #closing: Promise<void> | null = null;

  constructor(options: UpstashSubscriptionOptions) {
    if (!((options.backoffMs ?? 250) > 0)) {
      throw new RangeError("Cannot subscribe: backoffMs must be > 0");
    }
    this.#o = options;
    this.#loop = this.#run();
  }

  /** True while the stream is open (a message published now reaches this process). */
  get live(): boolean {
    return this.#live;
  }

  /** How many times the stream has been opened (each one a billed command). */
  get opens(): number {
    return this.#opens;
  }

  async #run(): Promise<void> {
    const { backoffMs = 250, backoffMaxMs = 30_000 } = this.#o;
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      const opened = Date.now();
      let reason: string;
      try {
        reason = await this.#once();
      } catch (error) {
        reason = error instanceof Error ? error.message : String(error);
      }
      this.#live = false;
      if (this.#stop.signal.aborted) return;
      this.#o.onDrop?.(reason);
      // A stream that stayed open a while was healthy: start the backoff over.
      failures = Date.now() - opened > backoffMaxMs ? 1 : failures + 1;
      const wait = Math.min(backoffMaxMs, backoffMs * 2 ** (failures - 1));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait * (0.5 + Math.random() / 2));
        this.#stop.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  }

  /** Holds one stream until it ends; returns why it ended. */
  async #once(): Promise<string> {
    const { url, token, channel, fetch: fetchImpl = fetch } = this.#o;
    const target = `${url.replace(/\/$/, "")}/subscribe/${encodeURIComponent(channel)}`;
    const response = await fetchImpl(target, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${token}`,
        Accept: "text/event-stream",
        "Cache-Control": "no-cache",
      },
      signal: this.#stop.signal,
    });
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      return `Cannot subscribe to ${channel}: HTTP ${response.status}`;
    }
    const lines = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    while (true) {
      const { value, done } = await lines.read();
      if (done) return "the stream ended";
      const parts = (rest + value).split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) this.#line(line);
    }
  }

  #line(line: string): void {
    if (!line.startsWith("data: ")) return;
    const data = line.slice(6);
    const first = data.indexOf(",");
    const second = data.indexOf(",", first + 1);
    if (first < 0 || second < 0) return;
    const kind = data.slice(0, first);
    if (kind === "subscribe") {
      this.#live = true;
      this.#opens++;
      this.#o.onOpen?.();
    } else if (kind === "message") {
      this.#o.onMessage(data.slice(second + 1));
    }
  }

  /** Ends the stream and stops reopening it; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#live = false;
      await this.#loop.catch(() => {});
    })();
    return this.#closing;
  }
}
