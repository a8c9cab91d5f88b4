/**
 * One webhook POST over HTTP/1.1 to a pinned address. fetch cannot do this in Deno 2.9: a custom
 * HttpClient's `tcp` proxy pins the address but speaks plain text even to an https URL, and fetching
 * the IP itself breaks certificate checks. So the connection is opened to the checked address with
 * Deno.connect, TLS is started on it with Deno.startTls naming the URL's host (SNI and certificate
 * checked against the name), and the request is written by hand. Nothing is followed, at most
 * `maxResponseBytes` of the answer are read (the status and headers), and the connection closes.
 */
import type { WebhookTarget } from "./egress.ts";

/** The request of one delivery: the JSON body and the headers to add (the signed ones). */
export interface WebhookRequest {
  body: string;
  headers: Record<string, string>;
}

/** Options of one send: its deadline (abort), the cap on the answer read, and extra CA roots. */
export interface SendOptions {
  signal: AbortSignal;
  maxResponseBytes: number;
  caCerts?: string[];
}

/** The receiver's answer: its status and headers (the body is never read). */
export interface WebhookResponse {
  status: number;
  headers: Headers;
}

/** Sends one delivery; resolves with the answer, rejects on a network error or the signal's abort. */
export type SendWebhook = (
  target: WebhookTarget,
  request: WebhookRequest,
  options: SendOptions,
) => Promise<WebhookResponse>;

const encoder = new TextEncoder();
const HEAD_END = encoder.encode("\r\n\r\n");

function unbracket(host: string): string {
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

function encodeRequest(target: WebhookTarget, { body, headers }: WebhookRequest): Uint8Array {
  const bytes = encoder.encode(body);
  const lines = [
    `POST ${target.url.pathname}${target.url.search} HTTP/1.1`,
    `Host: ${target.url.host}`,
    "User-Agent: image-jobs-webhooks/1.1",
    "Content-Type: application/json",
    `Content-Length: ${bytes.length}`,
    "Connection: close",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value.replace(/[\r\n]/g, "")}`),
  ];
  const head = encoder.encode(`${lines.join("\r\n")}\r\n\r\n`);
  const out = new Uint8Array(head.length + bytes.length);
  out.set(head);
  out.set(bytes, head.length);
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = Math.max(0, from); i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function parseHead(text: string): WebhookResponse {
  const [statusLine, ...lines] = text.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  if (match === null) {
    throw new Error("Cannot read the webhook answer: not an HTTP/1.x status line");
  }
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    try {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch {
      // a header Headers refuses is of no use here
    }
  }
  return { status: Number(match[1]), headers };
}

/** Reads answers' heads until a final (non-1xx) one, within maxBytes in all. */
async function readResponse(conn: Deno.Conn, maxBytes: number): Promise<WebhookResponse> {
  let buffer = new Uint8Array(0);
  let start = 0;
  const chunk = new Uint8Array(Math.min(16 * 1024, maxBytes));
  while (true) {
    const end = indexOf(buffer, HEAD_END, start);
    if (end >= 0) {
      const response = parseHead(new TextDecoder().decode(buffer.subarray(start, end)));
      start = end + HEAD_END.length;
      if (response.status >= 200 || response.status === 101) return response;
      continue; // 1xx informational: the final answer follows
    }
    if (buffer.length >= maxBytes) {
      throw new Error(`Cannot read the webhook answer: no end of headers in ${maxBytes} bytes`);
    }
    const read = await conn.read(
      chunk.subarray(0, Math.min(chunk.length, maxBytes - buffer.length)),
    );
    if (read === null) throw new Error("Cannot read the webhook answer: the connection closed");
    const grown = new Uint8Array(buffer.length + read);
    grown.set(buffer);
    grown.set(chunk.subarray(0, read), buffer.length);
    buffer = grown;
  }
}

/** Closes connections, the latest first (closing TLS closes the TCP connection under it too). */
function closeAll(open: Deno.Conn[]): void {
  while (open.length > 0) {
    try {
      open.pop()!.close();
    } catch {
      // already closed
    }
  }
}

/** The default transport: Deno.connect to the pinned address, TLS on it for https, HTTP/1.1. */
export async function sendWebhook(
  target: WebhookTarget,
  request: WebhookRequest,
  { signal, maxResponseBytes, caCerts }: SendOptions,
): Promise<WebhookResponse> {
  signal.throwIfAborted();
  const open: Deno.Conn[] = [];
  let finished = false;
  const track = <C extends Deno.Conn>(conn: C): C => {
    open.push(conn);
    if (finished) closeAll(open); // opened after the deadline: closed at once
    return conn;
  };
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  const work = (async () => {
    const { address: hostname, port } = target;
    const tcp = track(await Deno.connect({ hostname, port, signal }));
    let conn: Deno.Conn = tcp;
    if (target.tls) {
      // startTls returns at once; the handshake runs on the first write, under the same deadline.
      conn = track(await Deno.startTls(tcp, { hostname: unbracket(target.url.hostname), caCerts }));
    }
    await writeAll(conn, encodeRequest(target, request));
    return await readResponse(conn, maxResponseBytes);
  })();
  work.catch(() => {}); // after an abort, its own failure is of no interest
  try {
    return await Promise.race([work, aborted]);
  } finally {
    finished = true;
    signal.removeEventListener("abort", onAbort);
    closeAll(open);
  }
}
