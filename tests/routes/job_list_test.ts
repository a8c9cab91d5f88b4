/** Tests of GET /v1/jobs: the caller's jobs, newest first, paged by sealed cursors. */
import assert from "node:assert/strict";
import {
  bearer,
  countingProvider,
  submitJob,
  type TestService,
  waitForStatus,
  withService,
} from "../support/app.ts";

// deno-lint-ignore no-explicit-any
type Page = { data: any[]; next_cursor: string | null };

/** `GET path` as `token`: the status and the JSON answer. */
async function list(service: TestService, token: string, query = "") {
  const response = await service.request(`/v1/jobs${query}`, { headers: bearer(token) });
  return { status: response.status, body: await response.json() };
}

/** Every page of the listing from `query`, following `next_cursor`. */
async function allPages(service: TestService, token: string, query: string, between = () => {}) {
  const pages: Page[] = [];
  let cursor: string | null = null;
  do {
    const suffix: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
    const { status, body } = await list(service, token, `?${query}${suffix}`);
    assert.equal(status, 200, JSON.stringify(body));
    pages.push(body);
    cursor = body.next_cursor;
    between();
  } while (cursor !== null && pages.length < 20);
  return pages;
}

Deno.test("GET /v1/jobs pages through 45 jobs newest first, none twice or skipped, while more arrive", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const submitted: string[] = [];
    for (let i = 0; i < 45; i++) {
      submitted.push((await submitJob(service, token, { prompt: `fox ${i}` })).body.id);
    }
    const arriving: Promise<unknown>[] = [];
    const pages = await allPages(service, token, "limit=20", () => {
      for (let i = 0; i < 5; i++) arriving.push(submitJob(service, token, { prompt: "late" }));
    });
    await Promise.all(arriving);
    assert.deepEqual(pages.map((page) => page.data.length), [20, 20, 5]);
    assert.equal(pages.at(-1)!.next_cursor, null);
    const seen = pages.flatMap((page) => page.data.map((job) => job.id));
    assert.equal(new Set(seen).size, seen.length, "no job twice");
    assert.deepEqual(seen, [...submitted].reverse(), "every job once, newest first");
    const times = pages.flatMap((page) => page.data.map((job) => Date.parse(job.created_at)));
    assert.ok(times.every((time, i) => i === 0 || times[i - 1] >= time), "newest first");
  });
});

Deno.test("GET /v1/jobs lists items in the job document's shape without the image", async () => {
  await withService(async (service) => {
    const token = await service.token("alice");
    const { body: submitted } = await submitJob(service, token, { prompt: "a fox" });
    await waitForStatus(service, token, submitted.id, ["succeeded"]);
    const { status, body } = await list(service, token);
    assert.equal(status, 200);
    assert.equal(body.next_cursor, null);
    const [item] = body.data;
    assert.equal(item.id, submitted.id);
    assert.equal(item.status, "succeeded");
    assert.equal(item.prompt, "a fox");
    const { images, ...result } = item.result;
    assert.deepEqual(result, { mime_type: "image/png", revised_prompt: "revised" });
    assert.equal(images.length, 1);
    assert.equal(images[0].mime_type, "image/png");
    assert.match(images[0].url, new RegExp(`^/v1/jobs/${submitted.id}/images/0\\?ticket=`));
    assert.equal(item.urls.self, `/v1/jobs/${submitted.id}`);
    assert.match(item.urls.image, new RegExp(`^/v1/jobs/${submitted.id}/image\\?ticket=`));
  });
});

Deno.test("GET /v1/jobs filters by status and never shows another owner's jobs", async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  const provider = countingProvider({ gate, holds: (prompt) => prompt === "hold" });
  try {
    await withService(async (service) => {
      const alice = await service.token("alice");
      const bob = await service.token("bob");
      const done = (await submitJob(service, alice, { prompt: "quick" })).body.id;
      await waitForStatus(service, alice, done, ["succeeded"]);
      const running = (await submitJob(service, alice, { prompt: "hold" })).body.id;
      await waitForStatus(service, alice, running, ["running"]);
      const succeeded = await allPages(service, alice, "status=succeeded&limit=1");
      assert.deepEqual(succeeded.flatMap((p) => p.data.map((job) => job.id)), [done]);
      const onlyRunning = await list(service, alice, "?status=running");
      assert.deepEqual(onlyRunning.body.data.map((job: { id: string }) => job.id), [running]);
      const theirs = await list(service, bob);
      assert.deepEqual(theirs.body, { data: [], next_cursor: null });
    }, { provider });
  } finally {
    open();
  }
});

Deno.test("GET /v1/jobs refuses with 422 a cursor that was changed or is not the caller's", async (t) => {
  await withService(async (service) => {
    const alice = await service.token("alice");
    const bob = await service.token("bob");
    for (let i = 0; i < 3; i++) await submitJob(service, alice, { prompt: `fox ${i}` });
    for (let i = 0; i < 3; i++) await submitJob(service, bob, { prompt: `owl ${i}` });
    const { body } = await list(service, alice, "?limit=1");
    const cursor: string = body.next_cursor;
    assert.ok(cursor);
    const refused = async (token: string, query: string) => {
      const answer = await list(service, token, query);
      assert.equal(answer.status, 422, JSON.stringify(answer.body));
      assert.equal(answer.body.error.code, "invalid_request");
      assert.match(answer.body.error.message, /^Cannot list the jobs: the cursor/);
    };
    await t.step("another owner's cursor", () => refused(bob, `?limit=1&cursor=${cursor}`));
    await t.step("the cursor of another status filter", async () => {
      await refused(alice, `?limit=1&status=queued&cursor=${cursor}`);
    });
    await t.step("every single character changed", async () => {
      for (let i = 0; i < cursor.length; i++) {
        const changed = cursor.slice(0, i) + (cursor[i] === "A" ? "B" : "A") + cursor.slice(i + 1);
        await refused(alice, `?limit=1&cursor=${encodeURIComponent(changed)}`);
      }
    });
    await t.step("a made-up broker position", async () => {
      const forged = `${new TextEncoder().encode("0").toBase64({ alphabet: "base64url" })}.AAAA`;
      await refused(alice, `?cursor=${forged}`);
      await refused(alice, "?cursor=garbage");
    });
    await t.step("the untouched cursor still works", async () => {
      const next = await list(service, alice, `?limit=1&cursor=${encodeURIComponent(cursor)}`);
      assert.equal(next.status, 200);
      assert.equal(next.body.data.length, 1);
    });
  });
});

Deno.test("GET /v1/jobs answers 422 for a bad limit or status, and 401 before that", async (t) => {
  await withService(async (service) => {
    const token = await service.token("alice");
    for (
      const query of ["limit=0", "limit=101", "limit=abc", "limit=1.5", "limit=", "status=done"]
    ) {
      await t.step(query, async () => {
        const { status, body } = await list(service, token, `?${query}`);
        assert.equal(status, 422, JSON.stringify(body));
        assert.equal(body.error.code, "invalid_request");
        assert.match(body.error.message, /^Cannot accept the request: (limit|status) /);
      });
    }
    await t.step("no token", async () => {
      const response = await service.request("/v1/jobs?limit=0");
      assert.equal(response.status, 401);
      await response.body?.cancel();
    });
    await t.step("limit 100 and the default of 20 are fine", async () => {
      for (let i = 0; i < 21; i++) await submitJob(service, token, { prompt: `fox ${i}` });
      assert.equal((await list(service, token, "?limit=100")).body.data.length, 21);
      assert.equal((await list(service, token)).body.data.length, 20);
    });
  });
});
