/** Log lines carry the request id and never a credential. */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { redactByField } from "@logtape/redaction";
import { REDACTED_FIELDS, redactUrl } from "../../lib/logging.ts";
import { countingProvider, startTestService } from "../support/app.ts";

Deno.test("redactUrl hides ticket and token query values and keeps the rest", () => {
  assert.equal(
    redactUrl("/v1/jobs/a/events?ticket=eyJ.x.y&last_event_id=2"),
    "/v1/jobs/a/events?ticket=[REDACTED]&last_event_id=2",
  );
  assert.equal(redactUrl("/v1/ws?token=abc"), "/v1/ws?token=[REDACTED]");
  assert.equal(redactUrl("/v1/jobs/a"), "/v1/jobs/a");
});

Deno.test({
  name: "every request's log line carries its X-Request-Id and no credential",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const records: LogRecord[] = [];
    await configure({
      reset: true,
      contextLocalStorage: new AsyncLocalStorage(),
      sinks: {
        memory: redactByField((record: LogRecord) => void records.push(record), {
          fieldPatterns: REDACTED_FIELDS,
        }),
      },
      loggers: [
        { category: ["imagejobs"], lowestLevel: "debug", sinks: ["memory"] },
        { category: ["logtape", "meta"], lowestLevel: "error", sinks: ["memory"] },
      ],
    });
    const service = await startTestService({ provider: countingProvider() });
    try {
      const token = await service.token("logan");
      const res = await service.request("/v1/images", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
        body: JSON.stringify({ prompt: "logged", id: "logged-1" }),
      });
      const body = await res.json();
      const ticket = new URL(body.urls.events, "http://x").searchParams.get("ticket")!;
      const events = await service.request(body.urls.events);
      await events.text();
      const requestIds = [res.headers.get("X-Request-Id"), events.headers.get("X-Request-Id")];
      const lines = records.filter((r) => r.properties.url !== undefined);
      for (const id of requestIds) {
        assert.ok(id, "a response without X-Request-Id");
        assert.ok(
          lines.some((r) => r.properties.requestId === id),
          `no log line for request ${id}`,
        );
      }
      const dump = JSON.stringify(records.map((r) => ({ ...r, message: r.message.map(String) })));
      assert.ok(!dump.includes(token), "the bearer token reached a log");
      assert.ok(!dump.includes(ticket), "the ticket reached a log");
    } finally {
      await service.close();
      await reset();
    }
  },
});
