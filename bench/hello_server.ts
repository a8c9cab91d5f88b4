/** The limit to compare with: a bare `Deno.serve` hello world (`deno run --allow-net bench/hello_server.ts PORT`). */

/** Serves "Hello, World!" on 127.0.0.1:`port` until the process ends. */
export function serveHello(port: number): Deno.HttpServer {
  return Deno.serve(
    { port, hostname: "127.0.0.1", onListen() {} },
    () => new Response("Hello, World!"),
  );
}

if (import.meta.main) serveHello(Number(Deno.args[0] ?? "8200"));
