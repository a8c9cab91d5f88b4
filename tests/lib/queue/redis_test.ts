/** The broker contract against the Redis Streams broker, over TCP and over the Upstash REST proxy. */
import { brokerContract } from "./broker_contract.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";

for (const transport of ["tcp", "upstash"] as const) {
  brokerContract(
    transport === "tcp" ? "redis" : "upstash",
    () => redisBrokerFixture(transport),
    { sanitizeOps: false, sanitizeResources: false },
  );
}
