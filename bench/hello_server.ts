/** The limit to compare with: a bare `Deno.serve` hello world (`deno run --allow-net bench/hello_server.ts PORT`). */

const encoder = new TextEncoder();

/**
 * Serves "Hello, World!" on 127.0.0.1:`port` until the process ends; a path ending in `/events` gets
 * a streaming response that sends one event and stays open (the floor of an SSE subscriber's memory).
 */
export function serveHello(port: number): Deno.HttpServer {
  return Deno.serve({ port, hostname: "127.0.0.1", onListen() {} }, (request) => {
    if (!request.url.endsWith("/events")) return new Response("Hello, World!");
    const event = `event: queued\ndata: {"at":"${new Date().toISOString()}"}\n\n`;
    const body = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(encoder.encode(event)) });
    return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
  });
}

if (import.meta.main) serveHello(Number(Deno.args[0] ?? "8200"));
