/** Every answer the routes give, driven through their error cases, is documented and matches its schema. */
import { BrokerUnavailableError } from "../../lib/errors.ts";
import {
  appWith,
  bearer,
  countingProvider,
  readSse,
  startTestService,
  type TestService,
  waitForStatus,
} from "../support/app.ts";
import {
  answers,
  brokenBroker,
  devToken,
  JSON_HEADERS,
  withDevService,
} from "../support/openapi_service.ts";

/** `POST /v1/images` as `token` with a raw body. */
const post = (token: string, body: string) => ({ method: "POST", headers: bearer(token), body });
/** A request with `token`, `GET` unless `method` says otherwise. */
const as = (token: string, method = "GET") => ({ method, headers: bearer(token) });

/** Submits a job (a `hold` prompt stays running) and returns its id. */
async function submitted(service: TestService, token: string, prompt: string): Promise<string> {
  const response = await answers(
    service,
    202,
    "/v1/images",
    post(token, JSON.stringify({ prompt })),
  );
  return (await response.json()).id;
}

Deno.test("every status the routes answer is documented and every body matches its schema", async (t) => {
  await withDevService(async (service) => {
    const alice = await devToken(service, "alice");
    const bob = await devToken(service, "bob");
    const id = await submitted(service, alice, "a fox");

    await t.step("POST /v1/images: 200, 409, 401, 400, 422, 413 and 429", async () => {
      const again = JSON.stringify({ prompt: "a fox", id });
      await answers(service, 200, "/v1/images", post(alice, again));
      await answers(service, 409, "/v1/images", post(bob, again));
      await answers(service, 401, "/v1/images", { method: "POST", body: '{"prompt":"x"}' });
      await answers(service, 400, "/v1/images", post(alice, "{not json"));
      await answers(service, 422, "/v1/images", post(alice, '{"prompt":""}'));
      const large = JSON.stringify({ prompt: "x".repeat(70_000) });
      await answers(service, 413, "/v1/images", post(alice, large));
      const rater = await devToken(service, "rater");
      await submitted(service, rater, "one");
      await submitted(service, rater, "two");
      await answers(service, 429, "/v1/images", post(rater, '{"prompt":"three"}'));
    });

    await t.step("the job routes: 503 when the store is down, 500 on a fault", async () => {
      const faults = [[new BrokerUnavailableError("down"), 503], [new Error("bug"), 500]] as const;
      for (const [error, status] of faults) {
        const app = appWith(service, { broker: brokenBroker(service.runtime.deps.broker, error) });
        await answers(app, status, "/v1/images", post(bob, '{"prompt":"x"}'));
        await answers(app, status, `/v1/jobs/${id}`, as(alice));
        await answers(app, status, `/v1/jobs/${id}`, as(alice, "DELETE"));
        await answers(app, status, "/v1/jobs", as(alice));
        await answers(app, status, `/v1/jobs/${id}/image`, as(alice));
      }
    });

    await t.step("the v1.1 routes: 200, 304, 401, 404, 422 and 429", async () => {
      const frank = await devToken(service, "frank");
      const waited = post(frank, '{"prompt":"quick"}');
      await answers(service, 200, "/v1/images", {
        ...waited,
        headers: { ...waited.headers, Prefer: "wait=10" },
      });
      await answers(service, 422, "/v1/images", {
        ...waited,
        headers: { ...waited.headers, Prefer: "wait=x" },
      });
      await submitted(service, frank, "another");
      const page = await (await answers(service, 200, "/v1/jobs?limit=1", as(frank))).json();
      await answers(service, 200, `/v1/jobs?limit=1&cursor=${page.next_cursor}`, as(frank));
      await answers(service, 422, `/v1/jobs?limit=1&cursor=${page.next_cursor}`, as(alice));
      await answers(service, 422, "/v1/jobs?limit=0", as(frank));
      await answers(service, 401, "/v1/jobs");
      await waitForStatus(service, alice, id, ["succeeded"]);
      const image = await answers(service, 200, `/v1/jobs/${id}/image`, as(alice));
      await image.body?.cancel();
      const cached = { headers: { ...bearer(alice), "If-None-Match": image.headers.get("ETag")! } };
      await answers(service, 304, `/v1/jobs/${id}/image`, cached);
      await answers(service, 401, `/v1/jobs/${id}/image`);
      await answers(service, 404, `/v1/jobs/${id}/image`, as(bob));
      await answers(service, 401, "/v1/events");
      const erin = await devToken(service, "erin");
      const open = await answers(service, 200, "/v1/events", as(erin));
      await answers(service, 429, "/v1/events", as(erin));
      await open.body!.cancel();
    });

    await t.step("GET /v1/jobs/{id}: 200 with a result, 401 and 404", async () => {
      await waitForStatus(service, alice, id, ["succeeded"]);
      await answers(service, 200, `/v1/jobs/${id}`, as(alice));
      await answers(service, 401, `/v1/jobs/${id}`);
      await answers(service, 401, `/v1/jobs/${id}`, as("not.a.token"));
      await answers(service, 404, "/v1/jobs/no-such-job", as(alice));
      await answers(service, 404, "/v1/jobs/bad%20id", as(alice));
    });

    await t.step("DELETE /v1/jobs/{id}: 202, 409, 404 and 401", async () => {
      const held = await submitted(service, alice, "hold this one");
      await answers(service, 202, `/v1/jobs/${held}`, as(alice, "DELETE"));
      await answers(service, 409, `/v1/jobs/${id}`, as(alice, "DELETE"));
      await answers(service, 404, "/v1/jobs/no-such-job", as(alice, "DELETE"));
      await answers(service, 401, `/v1/jobs/${id}`, { method: "DELETE" });
    });

    await t.step("GET /v1/jobs/{id}/events: 200, 204, 400, 401, 404 and 429", async () => {
      const events = await readSse(await answers(service, 200, `/v1/jobs/${id}/events`, as(alice)));
      const resume = { headers: { ...bearer(alice), "Last-Event-ID": events.at(-1)!.id! } };
      await answers(service, 204, `/v1/jobs/${id}/events`, resume);
      await answers(service, 400, `/v1/jobs/${id}/events?last_event_id=nope`, as(alice));
      await answers(service, 401, `/v1/jobs/${id}/events`);
      await answers(service, 404, "/v1/jobs/no-such-job/events", as(alice));
      const dave = await devToken(service, "dave");
      const held = await submitted(service, dave, "hold the stream");
      const open = await answers(service, 200, `/v1/jobs/${held}/events`, as(dave));
      await answers(service, 429, `/v1/jobs/${held}/events`, as(dave));
      await open.body!.cancel();
    });

    await t.step(
      "GET /v1/ws: 400 without an upgrade, 403 from another origin, 401 for a bad ticket",
      async () => {
        await answers(service, 400, "/v1/ws", as(alice));
        const foreign = { Origin: "https://evil.example", Upgrade: "websocket" };
        await answers(service, 403, "/v1/ws", { headers: foreign });
        await answers(service, 401, "/v1/ws?ticket=forged.x", {
          headers: { Upgrade: "websocket" },
        });
      },
    );

    await t.step("POST /v1/dev/token: 200, 400 and 422", async () => {
      const dev = (body: string) => ({ method: "POST", headers: JSON_HEADERS, body });
      await answers(service, 200, "/v1/dev/token", { method: "POST" });
      await answers(service, 400, "/v1/dev/token", dev("{"));
      await answers(service, 422, "/v1/dev/token", dev('{"sub":""}'));
    });

    await t.step(
      "operations: /healthz, /readyz (200 and 503), /metrics, /openapi.json",
      async () => {
        for (const path of ["/healthz", "/readyz", "/metrics", "/openapi.json"]) {
          await (await answers(service, 200, path)).body?.cancel();
        }
        const down = new BrokerUnavailableError("down");
        const app = appWith(service, { broker: brokenBroker(service.runtime.deps.broker, down) });
        await answers(app, 503, "/readyz");
      },
    );
  });

  await t.step("POST /v1/dev/token without DEV_MODE: 404", async () => {
    const service = await startTestService({ provider: countingProvider() });
    try {
      await answers(service, 404, "/v1/dev/token", { method: "POST" });
    } finally {
      await service.close();
    }
  });
});
