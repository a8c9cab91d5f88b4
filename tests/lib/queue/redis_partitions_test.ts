/** The broker contract against the Redis Streams broker with three partitions, over TCP and Upstash REST. */
import { brokerContract } from "./broker_contract.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";

for (const transport of ["tcp", "upstash"] as const) {
  brokerContract(
    `${transport === "tcp" ? "redis" : "upstash"} 3-partition`,
    () => redisBrokerFixture(transport, 3),
    { sanitizeOps: false, sanitizeResources: false },
  );
}
