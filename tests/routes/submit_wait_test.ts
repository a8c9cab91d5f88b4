/** Tests of POST /v1/images with `Prefer: wait=N`: 200 with the ended job, 202 in time, freed waiters. */
import assert from "node:assert/strict";
import { parseWait } from "../../routes/prefer.ts";
import {
  bearer,
  countingProvider,
  submitJob,
  type TestService,
  until,
  waitForStatus,
  withService,
} from "../support/app.ts";

/** A provider held until `open()` is called. */
function heldProvider() {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  return { provider: countingProvider({ gate }), open };
}

/** Submits with a `Prefer` header, returning the response and its JSON. */
async function submitWaiting(
  service: TestService,
  token: string,
  prefer: string,
  body: Record<string, unknown> = { prompt: "a fox" },
  init: RequestInit = {},
  // deno-lint-ignore no-explicit-any
): Promise<{ response: Response; body: any }> {
  const response = await service.request("/v1/images", {
    method: "POST",
    headers: bearer(token, { Prefer: prefer }),
    body: JSON.stringify(body),
    ...init,
  });
  return { response, body: await response.json() };
}

Deno.test("parseWait reads RFC 7240 wait preferences", () => {
  const cases: [string | undefined, number | undefined | "invalid"][] = [
    [undefined, undefined],
    ["wait=5", 5],
    ["WAIT = 7", 7],
    ['wait="9"', 9],
    ["respond-async, wait=10", 10],
    ["return=minimal; foo=bar, wait=3;x=1", 3],
    ["wait=2, wait=40", 2],
    ['handling=lenient, x="a,wait=zz", wait=4', 4],
    ["wait=60", 60],
    ["wait=61", 60],
    ["wait=99999999999999999999", 60],
    ["return=minimal", undefined],
    ["", undefined],
    ["wait=0", "invalid"],
    ["wait=-1", "invalid"],
    ["wait=1.5", "invalid"],
    ["wait=abc", "invalid"],
    ["wait", "invalid"],
    ["wait=", "invalid"],
    ["wait=999999999999999999999", "invalid"],
  ];
  for (const [header, expected] of cases) assert.equal(parseWait(header), expected, header);
});

Deno.test("POST /v1/images with Prefer: wait answers 200 with the job when it ends in time", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const { response, body } = await submitWaiting(service, token, "wait=10");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Preference-Applied"), "wait=10");
    assert.equal(response.headers.get("Location"), `/v1/jobs/${body.id}`);
    assert.equal(body.status, "succeeded");
    assert.equal(body.prompt, "a fox");
    assert.match(body.result.image, /^data:image\/png;base64,/);
    assert.match(body.urls.image, new RegExp(`^/v1/jobs/${body.id}/image\\?ticket=`));
    assert.equal(service.runtime.relay!.size, 0, "the waiter is gone");
  });
});

Deno.test("POST /v1/images with Prefer: wait answers 202 when the job does not end in time", async () => {
  const { provider, open } = heldProvider();
  try {
    await withService(async (service) => {
      const token = await service.token("alice");
      const started = Date.now();
      const { response, body } = await submitWaiting(service, token, "respond-async, wait=1");
      assert.equal(response.status, 202);
      assert.ok(Date.now() - started >= 900, "it waited about a second");
      assert.equal(response.headers.get("Preference-Applied"), null);
      assert.equal(body.status, "queued");
      assert.ok(body.urls.image, "the submit answer names the image URL");
      assert.equal(service.runtime.relay!.size, 0, "the waiter is gone");
    }, { provider });
  } finally {
    open();
  }
});

Deno.test("POST /v1/images with Prefer: wait frees its waiter when the client goes away", async () => {
  const { provider, open } = heldProvider();
  try {
    await withService(async (service) => {
      const token = await service.token("alice");
      const relay = service.runtime.relay!;
      const abort = new AbortController();
      const started = Date.now();
      const pending = submitWaiting(service, token, "wait=60", { prompt: "a fox" }, {
        signal: abort.signal,
      });
      await until(() => relay.size === 1, "the waiter to subscribe");
      abort.abort();
      const { response } = await pending;
      assert.equal(response.status, 202);
      assert.ok(Date.now() - started < 30_000, "the request ended with the client");
      assert.equal(relay.size, 0, "the subscription was freed");
    }, { provider });
  } finally {
    open();
  }
});

Deno.test("POST /v1/images with Prefer: wait on an existing id waits for that job", async (t) => {
  const { provider, open } = heldProvider();
  try {
    await withService(async (service) => {
      const token = await service.token("alice");
      const relay = service.runtime.relay!;
      await t.step("a running job: 200 once it ends", async () => {
        const first = await submitJob(service, token, { prompt: "a fox", id: "again-1" });
        assert.equal(first.response.status, 202);
        const pending = submitWaiting(service, token, "wait=30", {
          prompt: "a fox",
          id: "again-1",
        });
        await until(() => relay.size === 1, "the waiter to subscribe");
        open();
        const { response, body } = await pending;
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("Preference-Applied"), "wait=30");
        assert.equal(body.id, "again-1");
        assert.equal(body.status, "succeeded");
        assert.equal(provider.calls, 1, "no new work");
      });
      await t.step("an ended job: 200 at once, larger waits counting as 60", async () => {
        const { response, body } = await submitWaiting(service, token, "wait=3600", {
          prompt: "a fox",
          id: "again-1",
        });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("Preference-Applied"), "wait=60");
        assert.equal(body.status, "succeeded");
      });
      await t.step("without Prefer the replay answers the submit answer", async () => {
        const { response, body } = await submitJob(service, token, { prompt: "x", id: "again-1" });
        assert.equal(response.status, 200);
        assert.deepEqual(Object.keys(body).sort(), ["created_at", "id", "status", "urls"]);
      });
    }, { provider });
  } finally {
    open();
  }
});

Deno.test("POST /v1/images answers 422 for a malformed Prefer: wait, 401 before that", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    for (const prefer of ["wait=0", "wait=abc", "wait", "wait=-3", "respond-async, wait=1.5"]) {
      await t.step(prefer, async () => {
        const { response, body } = await submitWaiting(service, token, prefer);
        assert.equal(response.status, 422);
        assert.equal(body.error.code, "invalid_request");
        assert.match(body.error.message, /^Cannot accept the request: Prefer /);
      });
    }
    await t.step("no token: 401 whatever the header", async () => {
      const response = await service.request("/v1/images", {
        method: "POST",
        headers: { Prefer: "wait=abc", "Content-Type": "application/json" },
        body: '{"prompt":"a fox"}',
      });
      assert.equal(response.status, 401);
      await response.body?.cancel();
    });
    await t.step("other preferences alone change nothing", async () => {
      const { response, body } = await submitWaiting(service, token, "return=minimal, handling=x");
      assert.equal(response.status, 202);
      await waitForStatus(service, token, body.id, ["succeeded"]);
    });
  }, { provider: countingProvider({ latencyMs: 50 }) });
});

Deno.test("POST /v1/images with Prefer: wait holds one of the owner's stream slots: past them, 202 at once", async () => {
  const { provider, open } = heldProvider();
  try {
    await withService(async (service) => {
      const alice = await service.token("alice");
      const bob = await service.token("bob");
      const relay = service.runtime.relay!;
      const waits = [
        submitWaiting(service, alice, "wait=60"),
        submitWaiting(service, alice, "wait=60"),
      ];
      await until(() => relay.size === 2, "alice's two waits to subscribe");
      const third = await submitWaiting(service, alice, "wait=60");
      assert.equal(third.response.status, 202, "no slot left: the usual answer, at once");
      assert.equal(third.response.headers.get("Preference-Applied"), null);
      assert.equal(relay.size, 2, "the third submit opened no wait");
      const other = submitWaiting(service, bob, "wait=60");
      await until(() => relay.size === 3, "another owner still waits");
      open();
      for (const { response } of await Promise.all([...waits, other])) {
        assert.equal(response.status, 200);
      }
      // The slots came back: a wait works again.
      const again = await submitWaiting(service, alice, "wait=30");
      assert.equal(again.response.status, 200);
    }, { provider, env: { MAX_STREAMS_PER_OWNER: "2" } });
  } finally {
    open();
  }
});
