/**
 * A lean Server-Sent Events writer: one ReadableStream per client with synchronous writes, and one shared
 * keepalive timer for every open stream of the process (not one timer and one TransformStream each). A
 * client that stops reading is cut off once its unread bytes pass a cap, instead of buffering forever.
 */

const encoder = new TextEncoder();

/** One open event stream. */
export interface SseStream {
  /** The response body. */
  readonly body: ReadableStream<Uint8Array>;
  /** Resolves when the client goes away, the stream is closed, or it is cut off for not reading. */
  readonly closed: Promise<void>;
  /** True once the stream was cut off because its client stopped reading. */
  readonly overflowed: boolean;
  /** Sends one event; ignored once closed. */
  event(id: string, type: string, data: string): void;
  /** Sends raw lines (a comment, a `retry:` hint); ignored once closed. */
  raw(text: string): void;
  /** Resolves once the client has read everything sent so far, or the stream closed (paces replays). */
  drain(): Promise<void>;
  /** Ends the stream; idempotent. */
  close(): void;
}

/** Opens event streams and sends a keepalive comment on all of them every `keepaliveMs`. */
export class SseHub {
  #open = new Set<SseStream>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #keepaliveMs: number;
  #maxBufferedBytes: number;

  constructor(
    { keepaliveMs, maxBufferedBytes = 1024 * 1024 }: {
      keepaliveMs: number;
      /** Unread bytes a stream may hold; one event larger than this still goes to an idle reader. */
      maxBufferedBytes?: number;
    },
  ) {
    if (keepaliveMs < 1) throw new RangeError("Cannot create the hub: keepaliveMs must be >= 1");
    if (!(maxBufferedBytes >= 1)) {
      throw new RangeError("Cannot create the hub: maxBufferedBytes must be >= 1");
    }
    this.#keepaliveMs = keepaliveMs;
    this.#maxBufferedBytes = maxBufferedBytes;
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
    let drained: (() => void)[] = [];
    const wake = () => {
      const waiting = drained;
      drained = [];
      for (const resolve of waiting) resolve();
    };
    const finish = () => {
      if (ended) return;
      ended = true;
      wake();
      this.#open.delete(stream);
      if (this.#open.size === 0) this.#stopTimer();
      resolveClosed();
    };
    // Sized in bytes with a high-water mark of 0, so -desiredSize is the number of unread bytes.
    // `pull` runs when the client waits for more with nothing queued: all sent so far was read.
    const body = new ReadableStream<Uint8Array>({
      start: (c) => void (controller = c),
      pull: wake,
      cancel: finish,
    }, { highWaterMark: 0, size: (chunk) => chunk.byteLength });
    let overflowed = false;
    const write = (text: string) => {
      if (ended) return;
      const bytes = encoder.encode(text);
      const unread = -(controller.desiredSize ?? 0);
      if (unread > 0 && unread + bytes.byteLength > this.#maxBufferedBytes) {
        overflowed = true;
        try {
          // Drops what is queued and ends the response: the client reconnects and resumes by id.
          controller.error(new Error("Cannot send the event: the client stopped reading"));
        } catch {
          // already closed
        }
        return finish();
      }
      try {
        controller.enqueue(bytes);
      } catch {
        finish();
      }
    };
    const stream: SseStream = {
      body,
      closed,
      get overflowed() {
        return overflowed;
      },
      event: (id, type, data) => write(`id: ${id}\nevent: ${type}\ndata: ${data}\n\n`),
      raw: write,
      drain: () =>
        ended || (controller.desiredSize ?? 0) >= 0
          ? Promise.resolve()
          : new Promise<void>((resolve) => drained.push(resolve)),
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
