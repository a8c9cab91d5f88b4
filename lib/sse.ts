/**
 * A lean Server-Sent Events writer: one ReadableStream per client with synchronous writes, and one shared
 * keepalive timer for every open stream of the process (not one timer and one TransformStream each).
 */

const encoder = new TextEncoder();

/** One open event stream. */
export interface SseStream {
  /** The response body. */
  readonly body: ReadableStream<Uint8Array>;
  /** Resolves when the client goes away or the stream is closed. */
  readonly closed: Promise<void>;
  /** Sends one event; ignored once closed. */
  event(id: string, type: string, data: string): void;
  /** Sends raw lines (a comment, a `retry:` hint); ignored once closed. */
  raw(text: string): void;
  /** Ends the stream; idempotent. */
  close(): void;
}

/** Opens event streams and sends a keepalive comment on all of them every `keepaliveMs`. */
export class SseHub {
  #open = new Set<SseStream>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #keepaliveMs: number;

  constructor({ keepaliveMs }: { keepaliveMs: number }) {
    if (keepaliveMs < 1) throw new RangeError("Cannot create the hub: keepaliveMs must be >= 1");
    this.#keepaliveMs = keepaliveMs;
  }

  /** Number of open streams. */
  get size(): number {
    return this.#open.size;
  }

  /** Opens a stream; it leaves the hub when it closes. */
  open(): SseStream {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let ended = false;
    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    const finish = () => {
      if (ended) return;
      ended = true;
      this.#open.delete(stream);
      if (this.#open.size === 0) this.#stopTimer();
      resolveClosed();
    };
    const body = new ReadableStream<Uint8Array>({
      start: (c) => void (controller = c),
      cancel: finish,
    }, { highWaterMark: 0 });
    const write = (text: string) => {
      if (ended) return;
      try {
        controller.enqueue(encoder.encode(text));
      } catch {
        finish();
      }
    };
    const stream: SseStream = {
      body,
      closed,
      event: (id, type, data) => write(`id: ${id}\nevent: ${type}\ndata: ${data}\n\n`),
      raw: write,
      close: () => {
        if (ended) return;
        try {
          controller.close();
        } catch {
          // the client already went away
        }
        finish();
      },
    };
    this.#open.add(stream);
    this.#timer ??= setInterval(() => {
      for (const open of this.#open) open.raw(": keepalive\n\n");
    }, this.#keepaliveMs);
    return stream;
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
