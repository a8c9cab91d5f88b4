/**
 * The test proxy's pub/sub endpoints, as Upstash's REST API has them: `POST /subscribe/<channel>` holds
 * a Server-Sent Events stream (`data: subscribe,<channel>,1`, then `data: message,<channel>,<payload>`
 * per message) on its own Redis connection, and `POST /publish/<channel>[/<message>]` publishes. Billing
 * as Upstash counts it: one command per subscribe, one per message a subscription delivers, one per
 * publish.
 */
import { encodeCommand, parseReply, type RespValue } from "./redis_server.ts";

/** What the pub/sub endpoints report to the proxy. */
export interface PubSubCounters {
  /** Adds billed commands, under a name ("SUBSCRIBE", "message", "PUBLISH"). */
  bill(n: number, name: string): void;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function text(value: RespValue): string {
  return value instanceof Uint8Array ? decoder.decode(value) : String(value);
}

/** The live subscriptions of one proxy. */
export class PubSubEndpoints {
  #redis: { hostname: string; port: number };
  #counters: PubSubCounters;
  #open = new Set<{ conn: Deno.TcpConn; end(): void }>();

  constructor(redis: { hostname: string; port: number }, counters: PubSubCounters) {
    this.#redis = redis;
    this.#counters = counters;
  }

  /** Subscriptions open now. */
  get subscribers(): number {
    return this.#open.size;
  }

  /** Ends every open subscription stream, as when Upstash or a network cuts them. */
  dropAll(): void {
    for (const sub of [...this.#open]) sub.end();
  }

  /** Answers `/subscribe/<channel>` or `/publish/<channel>[/<message>]`; null for other paths. */
  async handle(path: string, request: Request): Promise<Response | null> {
    const [, verb, channel, ...rest] = path.split("/").map(decodeURIComponent);
    if (verb === "subscribe" && channel && rest.length === 0) return await this.#subscribe(channel);
    if (verb === "publish" && channel) {
      const message = rest.length > 0 ? rest.join("/") : await request.text();
      this.#counters.bill(1, "PUBLISH");
      const reply = await this.#once(["PUBLISH", channel, message]);
      return Response.json({ result: reply });
    }
    return null;
  }

  async #once(command: string[]): Promise<RespValue> {
    const conn = await Deno.connect(this.#redis);
    try {
      await conn.write(encodeCommand(command));
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      const parsed = n ? parseReply(buf, 0, n) : null;
      return parsed ? parsed[0] : null;
    } finally {
      conn.close();
    }
  }

  async #subscribe(channel: string): Promise<Response> {
    const conn = await Deno.connect(this.#redis);
    this.#counters.bill(1, "SUBSCRIBE");
    let ended = false;
    const entry = { conn, end: () => {} };
    const counters = this.#counters;
    const open = this.#open;
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        const end = () => {
          if (ended) return;
          ended = true;
          open.delete(entry);
          try {
            conn.close();
          } catch {
            // Already closed.
          }
          try {
            controller.close();
          } catch {
            // The client went away first.
          }
        };
        entry.end = end;
        open.add(entry);
        await conn.write(encodeCommand(["SUBSCRIBE", channel]));
        let buf = new Uint8Array(0);
        const chunk = new Uint8Array(16 * 1024);
        try {
          while (!ended) {
            const n = await conn.read(chunk);
            if (n === null) break;
            const next = new Uint8Array(buf.length + n);
            next.set(buf);
            next.set(chunk.subarray(0, n), buf.length);
            buf = next;
            let at = 0;
            for (let parsed = parseReply(buf, 0, buf.length); parsed;) {
              at = parsed[1];
              const [kind, name, payload] = (parsed[0] as RespValue[]).map(text);
              if (kind === "message") counters.bill(1, "message");
              controller.enqueue(encoder.encode(`data: ${kind},${name},${payload}\n\n`));
              parsed = parseReply(buf, at, buf.length);
            }
            buf = buf.slice(at);
          }
        } catch {
          // The connection closed under the read.
        }
        end();
      },
      cancel() {
        entry.end();
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  }

  /** Ends every subscription. */
  close(): void {
    this.dropAll();
  }
}
