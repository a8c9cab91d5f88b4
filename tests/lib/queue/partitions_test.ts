/** Partitions of the Redis broker: key names with one and with three partitions, tags, and the intake mover. */
import assert from "node:assert/strict";
import { KeyLayout, partitionOf, partitionTags } from "../../../lib/queue/partitions.ts";
import { keySlot, SLOT_COUNT } from "../../../lib/redis/slot.ts";
import { redisCommand } from "../../support/redis_server.ts";
import { SUCCESS } from "./broker_contract_helpers.ts";
import { redisBrokerFixture } from "./redis_fixture.ts";
import { utcDay } from "../../../lib/pace/usage.ts";

const test = (name: string, fn: () => Promise<void> | void) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

/** Every key on the server, sorted. */
async function allKeys(port: number): Promise<string[]> {
  return (await redisCommand(port, ["KEYS", "*"]) as string[]).sort();
}

/**
 * Runs two jobs through every kind of write (submit with limits, claim, start, retry, promote, finish,
 * dead letter) and returns every key name seen while a retry waited and at the end.
 */
async function exercise(
  fixture: Awaited<ReturnType<typeof redisBrokerFixture>>,
  ids: string[],
): Promise<string[]> {
  const { broker } = fixture;
  await broker.init();
  const limits = { ratePerMinute: 10, maxActivePerOwner: 10 };
  // The first job has a webhook: its deliveries wait in its partition's outbox.
  const webhook = "https://hooks.example/in";
  await broker.submit({ id: ids[0], owner: "ann", prompt: "a fox", webhook }, limits);
  await broker.submit({ id: ids[1], owner: "ann", prompt: "a fox" }, limits);
  const claimed = [];
  while (claimed.length < ids.length) {
    claimed.push(...await broker.claim("w", 10, { blockMs: 100 }));
  }
  const [first, second] = claimed.sort((a, b) => a.jobId.localeCompare(b.jobId));
  await broker.start(first);
  await broker.retryLater(first, 0, "busy");
  const waiting = await allKeys(fixture.server.port);
  await broker.promoteDue(Date.now() + 1_000);
  const [again] = await broker.claim("w", 1, { blockMs: 1_000 });
  await broker.start(again);
  await broker.finish(again, SUCCESS);
  await broker.deadLetter(second, "poison");
  await broker.sharedSecret("s");
  return [...new Set([...waiting, ...await allKeys(fixture.server.port)])].sort();
}

test("one partition keeps today's key names exactly", async () => {
  const fixture = await redisBrokerFixture("tcp", 1);
  const p = fixture.prefix;
  try {
    assert.deepEqual(await exercise(fixture, ["a", "b"]), [
      `${p}events`,
      // A job parked while another waited for a worker, then retried: the waiting room's clock.
      `${p}fair:clock`,
      `${p}job:a`,
      `${p}job:b`,
      `${p}jobs`,
      `${p}jobs:dead`,
      `${p}jobs:delayed`,
      // The fixture's broker keeps Socket.IO notices: each job end leaves one.
      `${p}notices`,
      `${p}owner:ann:active`,
      `${p}owner:ann:jobs`,
      `${p}owner:ann:rate`,
      `${p}owner:ann:usage:${utcDay(Date.now())}`,
      `${p}secret:s`,
      `${p}webhooks`,
      // The partition count the jobs are laid out for (layout_record.ts).
      `${p}{layout}partitions`,
    ]);
  } finally {
    await fixture.cleanup();
  }
});

test("three partitions tag every job key with its partition's tag, and owners with their own", async () => {
  const fixture = await redisBrokerFixture("tcp", 3);
  const p = fixture.prefix;
  const [t0, t1, t2] = partitionTags(3);
  // Ids chosen in different partitions: "j0" → 0, "j1" → 1.
  assert.deepEqual([partitionOf("j0", 3), partitionOf("j1", 3)], [0, 1]);
  try {
    assert.deepEqual(
      await exercise(fixture, ["j0", "j1"]),
      [
        `${p}jobs`,
        `${p}secret:s`,
        `${p}{${t0}}events`,
        `${p}{${t0}}fair:clock`,
        `${p}{${t0}}job:j0`,
        `${p}{${t0}}jobs`,
        `${p}{${t0}}jobs:delayed`,
        `${p}{${t0}}notices`,
        `${p}{${t0}}webhooks`,
        `${p}{${t1}}events`,
        `${p}{${t1}}job:j1`,
        `${p}{${t1}}jobs`,
        `${p}{${t1}}jobs:dead`,
        `${p}{${t1}}notices`,
        `${p}{${t2}}jobs`,
        `${p}{o:ann}active`,
        `${p}{o:ann}jobs`,
        `${p}{o:ann}rate`,
        `${p}{o:ann}usage:${utcDay(Date.now())}`,
        `${p}{layout}partitions`,
      ].sort(),
    );
  } finally {
    await fixture.cleanup();
  }
});

test("partition tags spread evenly: each third of the slots holds a third of the tags", () => {
  for (const n of [3, 6]) {
    const slots = partitionTags(n).map((tag) => keySlot(`img:{${tag}}jobs`));
    const thirds = [0, 0, 0];
    for (const slot of slots) thirds[Math.floor(slot * 3 / SLOT_COUNT)]++;
    assert.deepEqual(thirds, [n / 3, n / 3, n / 3], `N = ${n}: slots ${slots.join(", ")}`);
    assert.equal(new Set(slots).size, n);
  }
  assert.deepEqual(partitionTags(3), ["0.1", "1.0", "2.0"]);
  assert.deepEqual(partitionTags(3).map((tag) => keySlot(tag)), [1598, 8495, 14463]);
});

test("a job's partition is a stable hash of its id, spread evenly", () => {
  assert.deepEqual(["j0", "j1", "j2", "j3"].map((id) => partitionOf(id, 3)), [0, 1, 1, 2]);
  assert.equal(partitionOf("anything", 1), 0);
  const counts = [0, 0, 0];
  for (let i = 0; i < 3_000; i++) counts[partitionOf(`job-${i}`, 3)]++;
  for (const count of counts) assert.ok(count > 900 && count < 1_100, `${counts}`);
  const layout = new KeyLayout("P", 3);
  assert.equal(layout.job("j1"), `P{${partitionTags(3)[1]}}job:j1`);
});

test("the mover copies intake entries with their fields to their partitions and empties the intake", async () => {
  const fixture = await redisBrokerFixture("tcp", 3);
  const { broker, server, prefix } = fixture;
  const layout = new KeyLayout(prefix, 3);
  try {
    await broker.init();
    const ids = ["j0", "j1", "j2", "j3", "not a valid id!"];
    for (const id of ids) {
      await redisCommand(server.port, [
        "XADD",
        layout.intake,
        "*",
        "Id",
        id,
        "Token",
        "t",
        "Prompt",
        `p ${id}`,
      ]);
    }
    assert.equal(await broker.moveIntake("m", { blockMs: 100, idleMs: 60_000 }), ids.length);
    assert.equal(await redisCommand(server.port, ["XLEN", layout.intake]), 0);
    for (const id of ids) {
      const entries = await redisCommand(server.port, [
        "XRANGE",
        layout.jobs(partitionOf(id, 3)),
        "-",
        "+",
      ]) as [string, string[]][];
      const found = entries.filter(([, fields]) => fields[1] === id);
      assert.deepEqual(found.map(([, fields]) => fields), [[
        "Id",
        id,
        "Token",
        "t",
        "Prompt",
        `p ${id}`,
      ]]);
    }
    const pending = await redisCommand(server.port, [
      "XPENDING",
      layout.intake,
      "workers",
    ]) as unknown[];
    assert.equal(pending[0], 0);
  } finally {
    await fixture.cleanup();
  }
});

test("a mover that died between copy and acknowledgement leaves a duplicate that runs its job once", async () => {
  const fixture = await redisBrokerFixture("tcp", 3);
  const { broker, server, prefix } = fixture;
  const layout = new KeyLayout(prefix, 3);
  try {
    await broker.init();
    const fields = ["Id", "dup-1", "Token", "t", "Prompt", "a fox"];
    await redisCommand(server.port, ["XADD", layout.intake, "*", ...fields]);
    // The dead mover's first step: it read the entry and copied it, then died before acknowledging.
    await redisCommand(server.port, [
      "XREADGROUP",
      "GROUP",
      "workers",
      "dead",
      "COUNT",
      "1",
      "STREAMS",
      layout.intake,
      ">",
    ]);
    await redisCommand(server.port, ["XADD", layout.jobs(partitionOf("dup-1", 3)), "*", ...fields]);
    assert.equal(
      await broker.moveIntake("m", { blockMs: 0, idleMs: 0 }),
      1,
      "taken over and copied again",
    );
    assert.equal(await redisCommand(server.port, ["XLEN", layout.intake]), 0);
    const deliveries = [];
    while (deliveries.length < 2) deliveries.push(...await broker.claim("w", 2, { blockMs: 100 }));
    assert.deepEqual(deliveries.map((d) => d.jobId), ["dup-1", "dup-1"]);
    for (const d of deliveries) await broker.adoptSeed(d, { owner: "ann", prompt: "a fox" });
    const started = await Promise.all(deliveries.map((d) => broker.start(d)));
    assert.equal(started.filter((job) => job !== null).length, 1, "one entry runs the job");
    const runner = deliveries[started.findIndex((job) => job !== null)];
    assert.equal(await broker.finish(runner, SUCCESS), true);
    const events = await broker.events("dup-1");
    assert.deepEqual(events.map((e) => e.notification.type), ["queued", "started", "succeeded"]);
  } finally {
    await fixture.cleanup();
  }
});
