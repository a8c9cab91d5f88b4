/** Tests of the provider's I/O helpers: createDeadline, readLimited and decodeBase64. */
import assert from "node:assert/strict";
import { createDeadline, decodeBase64, readLimited } from "../../../lib/provider/images.ts";

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** A body of `chunks` chunks of 1 KiB that counts how many were pulled. */
function counted(chunks: number): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled === chunks) return controller.close();
      pulled++;
      controller.enqueue(new Uint8Array(1024));
    },
  }, { highWaterMark: 0 });
  return { body, pulled: () => pulled };
}

Deno.test("createDeadline follows the caller's signal with its reason", async (t) => {
  await t.step("a caller that aborts later", () => {
    const caller = new AbortController();
    const deadline = createDeadline(60_000, caller.signal);
    try {
      const reason = new DOMException("stop", "AbortError");
      caller.abort(reason);
      assert.equal(deadline.signal.aborted, true);
      assert.equal(deadline.signal.reason, reason);
      assert.equal(deadline.expired, false);
    } finally {
      deadline.clear();
    }
  });
  await t.step("a caller that had already aborted", () => {
    const caller = new AbortController();
    caller.abort(new Error("gone"));
    const deadline = createDeadline(60_000, caller.signal);
    deadline.clear();
    assert.equal(deadline.signal.aborted, true);
    assert.equal(deadline.signal.reason, caller.signal.reason);
  });
  await t.step("but not once cleared", () => {
    const caller = new AbortController();
    const deadline = createDeadline(60_000, caller.signal);
    deadline.clear();
    caller.abort();
    assert.equal(deadline.signal.aborted, false);
  });
});

Deno.test("createDeadline expires with a TimeoutError when its time passes", async () => {
  const caller = new AbortController();
  const deadline = createDeadline(1, caller.signal);
  try {
    await aborted(deadline.signal);
    assert.equal(deadline.expired, true);
    assert.equal((deadline.signal.reason as DOMException).name, "TimeoutError");
    assert.equal(caller.signal.aborted, false);
  } finally {
    deadline.clear();
  }
});

Deno.test("readLimited caps a body whatever its Content-Length says", async (t) => {
  await t.step("a compressed body is read chunk by chunk and cut off past the cap", async () => {
    // As fetch hands it over: decompressed, while Content-Length still counts the wire bytes.
    const { body, pulled } = counted(1024);
    const headers = { "content-encoding": "gzip", "content-length": "90" };
    assert.equal(await readLimited(new Response(body, { headers }), 10_000), null);
    assert.ok(pulled() <= 11, `${pulled()} chunks read`);
  });
  await t.step("a body without Content-Length is cut off past the cap", async () => {
    const { body, pulled } = counted(1024);
    assert.equal(await readLimited(new Response(body), 10_000), null);
    assert.ok(pulled() <= 11, `${pulled()} chunks read`);
  });
  await t.step("a body longer than its Content-Length is refused", async () => {
    const { body } = counted(20);
    const headers = { "content-length": "1024" };
    assert.equal(await readLimited(new Response(body, { headers }), 10_000), null);
  });
  await t.step("a body within the cap is returned whole", async () => {
    const { body } = counted(8);
    const headers = { "content-length": String(8 * 1024) };
    assert.equal((await readLimited(new Response(body, { headers }), 10_000))?.length, 8 * 1024);
  });
});

Deno.test("decodeBase64 keeps canonical text and re-encodes anything else", async (t) => {
  const bytes = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x41]);
  const canonical = bytes.toBase64();
  await t.step("canonical text is returned as it came", () => {
    const decoded = decodeBase64(canonical);
    assert.deepEqual(decoded?.bytes, bytes);
    assert.equal(decoded?.base64, canonical);
  });
  for (
    const [name, text] of [
      ["without padding", canonical.replace(/=+$/, "")],
      ["with whitespace", `${canonical.slice(0, 4)}\n${canonical.slice(4)}`],
      ["with stray bits in the last quantum", "/9j/4EF="],
    ]
  ) {
    await t.step(`text ${name} comes back canonical`, () => {
      const decoded = decodeBase64(text);
      assert.deepEqual(decoded?.bytes, bytes);
      assert.equal(decoded?.base64, canonical);
    });
  }
  await t.step("text that is not base64 gives null", () => {
    assert.equal(decodeBase64("not*base64"), null);
  });
});
