/** Tests of the page's browser modules that run anywhere: the SSE parser and the duration format. */
import assert from "node:assert/strict";
import { parseEvents } from "../../routes/static/feed.js";
import { duration } from "../../routes/static/card_view.js";

Deno.test("parseEvents reads SSE blocks and keeps the unfinished rest", async (t) => {
  await t.step("fields, comments, multi-line data and the three line endings", () => {
    const text = ': keepalive\n\nid: 7-0\nevent: queued\ndata: {"a":1}\n\n' +
      "id:8\r\nevent:started\r\ndata: x\r\ndata: y\r\n\r\nretry: 1500\rdata: z\r\rid: 9\nda";
    const { events, rest } = parseEvents(text);
    assert.deepEqual(events, [
      { id: undefined, type: "message", data: "" },
      { id: "7-0", type: "queued", data: '{"a":1}' },
      { id: "8", type: "started", data: "x\ny" },
      { id: undefined, type: "message", data: "z", retry: 1500 },
    ]);
    assert.equal(rest, "id: 9\nda");
  });
  await t.step("a block split across chunks is read once complete", () => {
    const first = parseEvents("id: 1\nevent: reset\nda");
    assert.deepEqual(first.events, []);
    const second = parseEvents(first.rest + 'ta: {"type":"reset"}\n\n');
    assert.deepEqual(second.events, [{ id: "1", type: "reset", data: '{"type":"reset"}' }]);
    assert.equal(second.rest, "");
  });
  await t.step("an empty id field is kept as empty (it clears the resume point)", () => {
    assert.deepEqual(parseEvents("id\ndata: q\n\n").events, [
      { id: "", type: "message", data: "q" },
    ]);
  });
});

Deno.test("duration reads as milliseconds, seconds or minutes", () => {
  const at = "2026-01-01T00:00:00.000Z";
  const start = Date.parse(at);
  assert.equal(duration(at, start + 350), "350 ms");
  assert.equal(duration(at, start + 4_240), "4.2 s");
  assert.equal(duration(at, start + 125_000), "2 min 5 s");
  assert.equal(duration(at, start - 10), "0 ms");
});
