/** A WebSocket test client that queues incoming JSON messages. */
import assert from "node:assert/strict";

// deno-lint-ignore no-explicit-any
export type Message = any;

/** A WebSocket client that queues incoming JSON messages and records how the socket closed. */
export class Client {
  readonly socket: WebSocket;
  readonly opened: Promise<boolean>;
  readonly closed: Promise<CloseEvent>;
  #queue: Message[] = [];
  #wake: (() => void) | null = null;

  constructor(url: string, headers?: Record<string, string>) {
    this.socket = headers ? new WebSocket(url, { headers }) : new WebSocket(url);
    this.opened = new Promise((resolve) => {
      this.socket.addEventListener("open", () => resolve(true), { once: true });
      this.socket.addEventListener("close", () => resolve(false), { once: true });
    });
    this.closed = new Promise((resolve) => {
      this.socket.addEventListener("close", (event) => {
        this.#wake?.();
        resolve(event);
      }, { once: true });
    });
    this.socket.addEventListener("error", () => {});
    this.socket.addEventListener("message", (event) => {
      this.#queue.push(JSON.parse(event.data));
      this.#wake?.();
    });
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /** The next message, failing after `ms` or when the socket closes first. */
  async next(ms = 10_000): Promise<Message> {
    const deadline = Date.now() + ms;
    while (this.#queue.length === 0) {
      if (this.socket.readyState >= WebSocket.CLOSING) {
        throw new Error("Cannot read: socket closed");
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Cannot read: no message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
    return this.#queue.shift();
  }

  /** Notifications until every job in `ids` has had its terminal event, grouped by job. */
  async notifications(ids: string[]): Promise<Map<string, Message[]>> {
    const byJob = new Map<string, Message[]>(ids.map((id) => [id, []]));
    const open = new Set(ids);
    while (open.size > 0) {
      const message = await this.next();
      if (message.type !== "notification") continue;
      const id = message.notification.id;
      assert.ok(byJob.has(id), `unexpected job ${id}`);
      byJob.get(id)!.push(message);
      if (["succeeded", "failed", "canceled"].includes(message.notification.type)) open.delete(id);
    }
    return byJob;
  }

  async close(): Promise<void> {
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close(1000);
    await this.closed;
  }
}
