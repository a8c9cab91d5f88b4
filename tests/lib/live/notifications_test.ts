/** A notification's JSON: made once per event, and a success's image spliced into its stored JSON. */
import assert from "node:assert/strict";
import {
  compareEventIds,
  notificationJson,
  type StoredEvent,
  withImage,
  withImageJson,
} from "../../../lib/live/notifications.ts";

const stored = JSON.stringify({
  id: "fox-1",
  type: "succeeded",
  success: true,
  data: { image: "", mime_type: "image/png", revised_prompt: 'a "red" fox, \\ "image":"" ✓' },
  at: "2026-11-24T12:00:00.000Z",
});

Deno.test("a success's image is spliced into its stored JSON as the same data URL serialising gives", () => {
  const event: StoredEvent = { eventId: "3", notification: JSON.parse(stored), json: stored };
  const full = withImage(event, "iVBORw0K+/==");
  assert.equal(full.notification.type, "succeeded");
  assert.deepEqual(JSON.parse(full.json!), full.notification);
  assert.deepEqual(JSON.parse(full.json!).data.image, "data:image/png;base64,iVBORw0K+/==");
  assert.equal(event.notification.type === "succeeded" && event.notification.data.image, "");
});

Deno.test("a JSON without exactly one empty image is not spliced", () => {
  assert.equal(withImageJson('{"data":{"image":"x"}}', "image/png", "AA=="), undefined);
  assert.equal(withImageJson('{"image":"","b":{"image":""}}', "image/png", "AA=="), undefined);
  const event: StoredEvent = { eventId: "3", notification: JSON.parse(stored) };
  const full = withImage(event, "AA==");
  assert.equal(full.json, undefined);
  assert.deepEqual(JSON.parse(notificationJson(full)), full.notification);
});

Deno.test("an event's JSON is made once and then shared", () => {
  const event: StoredEvent = {
    eventId: "1",
    notification: { id: "a", type: "queued", success: true, at: "2026-11-24T12:00:00.000Z" },
  };
  const first = notificationJson(event);
  event.notification = { ...event.notification, id: "changed" };
  assert.equal(notificationJson(event), first);
});

Deno.test("event ids compare as numbers, and stream ids by time then sequence", () => {
  assert.equal(compareEventIds("9", "10"), -1);
  assert.equal(compareEventIds("10", "10"), 0);
  assert.equal(compareEventIds("11", "10"), 1);
  assert.equal(compareEventIds("1700000000000-2", "1700000000000-10"), -1);
  assert.equal(compareEventIds("12345678901234567", "12345678901234568"), -1);
  assert.equal(compareEventIds("5", "5-1"), -1);
});
