/** The broker contract against the Redis Streams broker, over TCP and over the Upstash REST proxy. */
import { createRedisBroker } from "../../../lib/queue/redis.ts";
import { createTcpClient } from "../../../lib/redis/tcp.ts";
import { createUpstashClient } from "../../../lib/redis/upstash.ts";
import { startRedis } from "../../support/redis_server.ts";
import { startUpstashProxy } from "../../support/upstash_proxy.ts";
import { brokerContract } from "./broker_contract.ts";

brokerContract("redis", async () => {
  const server = await startRedis();
  const client = createTcpClient({ url: server.url });
  const broker = createRedisBroker(client, { prefix: `t${crypto.randomUUID().slice(0, 8)}:` });
  return {
    broker,
    cleanup: async () => {
      await broker.close();
      await server.stop();
    },
  };
}, { sanitizeOps: false, sanitizeResources: false });

brokerContract("upstash", async () => {
  const server = await startRedis();
  const token = crypto.randomUUID();
  const proxy = await startUpstashProxy({ redisUrl: server.url, token });
  const client = createUpstashClient({ url: proxy.url, token });
  const broker = createRedisBroker(client, { prefix: "u:", kind: "upstash" });
  return {
    broker,
    cleanup: async () => {
      await broker.close();
      await proxy.close();
      await server.stop();
    },
  };
}, { sanitizeOps: false, sanitizeResources: false });
