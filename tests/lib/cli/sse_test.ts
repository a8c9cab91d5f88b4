/** The CLI's SSE reader on byte streams cut anywhere. */
import assert from "node:assert/strict";
import { readSse, type SseEvent } from "../../../lib/cli/sse.ts";
import { CliError, EXIT } from "../../../lib/cli/errors.ts";

/** A stream that delivers `text` in the given chunks. */
function chunked(...chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => encoder.encode(c)));
}

async function collect(body: ReadableStream<Uint8Array>, idleMs?: number): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of readSse(body, { idleMs })) events.push(event);
  return events;
}

const STREAM = ': keepalive\n\nid: 1\nevent: queued\ndata: {"a":1}\n\n' +
  "id: 2\r\nevent: started\r\ndata: line one\r\ndata: line two\r\n\r\n" +
  "retry: 1000\n\nid: 3\nevent: succeeded\ndata:no-space\n\n";

const EXPECTED: SseEvent[] = [
  { id: "1", event: "queued", data: '{"a":1}' },
  { id: "2", event: "started", data: "line one\nline two" },
  { id: "3", event: "succeeded", data: "no-space" },
];

Deno.test("readSse parses events whatever the chunking", async (t) => {
  await t.step("in one chunk", async () => {
    assert.deepEqual(await collect(chunked(STREAM)), EXPECTED);
  });
  await t.step("one character at a time (CR and LF split apart)", async () => {
    assert.deepEqual(await collect(chunked(...STREAM.split(""))), EXPECTED);
  });
  await t.step("a multi-byte character split between chunks", async () => {
    const bytes = new TextEncoder().encode("data: café ☕\n\n");
    const body = ReadableStream.from([
      bytes.subarray(0, 9),
      bytes.subarray(9, 13),
      bytes.subarray(13),
    ]);
    assert.deepEqual(await collect(body), [{ event: "message", data: "café ☕", id: undefined }]);
  });
  await t.step("an event without its blank line at the end is not dispatched", async () => {
    assert.deepEqual(await collect(chunked("id: 9\ndata: half")), []);
  });
});

Deno.test("readSse fails with an unreachable error when the stream goes silent", async () => {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("id: 1\nevent: queued\ndata: x\n\n"));
    },
  });
  const seen: SseEvent[] = [];
  await assert.rejects(
    async () => {
      for await (const event of readSse(body, { idleMs: 50 })) seen.push(event);
    },
    (error) => error instanceof CliError && error.exitCode === EXIT.unreachable,
  );
  assert.deepEqual(seen, [{ id: "1", event: "queued", data: "x" }]);
});
