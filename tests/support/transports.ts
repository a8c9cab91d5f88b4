/** Runs a test over each Redis transport: TCP, and Upstash REST through the proxy to the same redis-server. */
import type { RedisServer } from "./redis_server.ts";
import { startUpstashProxy, type UpstashProxy } from "./upstash_proxy.ts";

/** Builds the broker part of a service environment for one redis-server, over one transport. */
export interface Via {
  readonly name: "tcp" | "upstash";
  /** Environment variables that point the service at `redis` over this transport. */
  redisEnv(redis: RedisServer): Promise<Record<string, string>>;
}

/** Registers `fn` once per transport, named `<name> (tcp)` and `<name> (upstash)`; proxies are closed after. */
export function transportTest(
  name: string,
  fn: (t: Deno.TestContext, via: Via) => Promise<void>,
): void {
  for (const transport of ["tcp", "upstash"] as const) {
    Deno.test({
      name: `${name} (${transport})`,
      sanitizeOps: false,
      sanitizeResources: false,
      async fn(t) {
        const proxies: UpstashProxy[] = [];
        const via: Via = {
          name: transport,
          async redisEnv(redis): Promise<Record<string, string>> {
            if (transport === "tcp") return { REDIS_URL: redis.url };
            const token = crypto.randomUUID();
            const proxy = await startUpstashProxy({ redisUrl: redis.url, token });
            proxies.push(proxy);
            return { UPSTASH_REDIS_REST_URL: proxy.url, UPSTASH_REDIS_REST_TOKEN: token };
          },
        };
        try {
          await fn(t, via);
        } finally {
          await Promise.allSettled(proxies.map((proxy) => proxy.close()));
        }
      },
    });
  }
}
