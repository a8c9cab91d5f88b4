/**
 * When the Socket.IO bridge may forget a notice: once the peer acknowledged its emit, or once the
 * server's second engine.io ping since the emit arrived. The server sends its next ping only after it
 * got the client's pong to the previous one (engine.io v4), and that pong left after the notice on
 * the same ordered connection: so the second ping proves the server read the notice and handed it to
 * its handlers, even when the handler (the seed's) acknowledges nothing.
 */
import type { WebhookTask } from "../queue/types.ts";

interface Unconfirmed {
  task: WebhookTask;
  /** Pings received since the emit. */
  pings: number;
}

/** The notices emitted on the current connection and not yet confirmed. */
export class Confirmations {
  #waiting = new Map<number, Unconfirmed>();
  #next = 0;

  /** Records an emit of `task`; returns the key its acknowledgement names. */
  add(task: WebhookTask): number {
    const key = this.#next++;
    this.#waiting.set(key, { task, pings: 0 });
    return key;
  }

  /** The peer acknowledged the emit `key`: its task, now confirmed (undefined if it was already). */
  ack(key: number): WebhookTask | undefined {
    const found = this.#waiting.get(key);
    this.#waiting.delete(key);
    return found?.task;
  }

  /** A ping from the server arrived: the tasks it confirms (the second ping since their emit). */
  ping(): WebhookTask[] {
    const confirmed: WebhookTask[] = [];
    for (const [key, item] of this.#waiting) {
      if (++item.pings < 2) continue;
      this.#waiting.delete(key);
      confirmed.push(item.task);
    }
    return confirmed;
  }

  /** The connection dropped: every unconfirmed task, forgotten here (it must go out again). */
  drain(): WebhookTask[] {
    const tasks = [...this.#waiting.values()].map((item) => item.task);
    this.#waiting.clear();
    return tasks;
  }

  /** Emits not yet confirmed. */
  get size(): number {
    return this.#waiting.size;
  }
}
