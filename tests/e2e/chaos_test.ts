/** The short chaos run: workers killed, provider calls failing and Redis restarted, yet every job ends once. */
import assert from "node:assert/strict";
import { formatReport, runChaos } from "../../bench/chaos.ts";

Deno.test({
  name: "under worker kills, provider failures and a Redis restart no job is lost or ends twice",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const report = await runChaos({ jobs: 300, workers: 2, killEveryMs: 2_000 });
    console.log(formatReport(report));
    assert.equal(report.accepted, 300);
    assert.equal(report.lost, 0, `lost: ${report.lostIds.join(", ")}`);
    assert.equal(report.duplicated, 0, `duplicated: ${report.duplicatedIds.join(", ")}`);
    assert.equal(report.succeeded + report.failed, report.accepted);
    assert.ok(report.workerKills >= 1, "at least one worker was killed");
    assert.equal(report.redisRestarts, 1);
    assert.ok(report.providerCalls >= report.accepted, "every job reached the provider");
    // A killed worker's in-flight call is repeated by the worker that takes its job over; any other
    // provider call beyond a job's recorded attempts means two workers ran it at once.
    assert.ok(
      report.duplicatedCalls <= report.takenOver,
      `${report.duplicatedCalls} duplicated provider calls, only ${report.takenOver} takeovers: ` +
        report.duplicatedCallIds.join(", "),
    );
  },
});
