/** Tests of POST /v1/dev/token: only in DEV_MODE, and only with the process's own random secret. */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { exportSPKI, generateKeyPair } from "jose";
import { bearer, submitJob, type TestService, waitForStatus, withService } from "../support/app.ts";

Deno.test("POST /v1/dev/token answers 404 without DEV_MODE", async () => {
  await withService(async (service) => {
    const response = await service.request("/v1/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    assert.equal(response.status, 404);
    assert.equal((await response.json()).error.code, "not_found");
  });
});

Deno.test("POST /v1/dev/token in DEV_MODE makes a token that submits jobs", async (t) => {
  await withService(async (service) => {
    await t.step("for a chosen subject", async () => {
      const response = await service.request("/v1/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sub: "dev-alice" }),
      });
      assert.equal(response.status, 200);
      const { token } = await response.json();
      assert.equal(typeof token, "string");
      const { response: submitted, body } = await submitJob(service, token);
      assert.equal(submitted.status, 202);
      const job = await waitForStatus(service, token, body.id, ["succeeded"]);
      assert.equal(job.status, "succeeded");
      const bob = await service.request(`/v1/jobs/${body.id}`, {
        headers: bearer(await devToken(service, "dev-bob")),
      });
      assert.equal(bob.status, 404);
      await bob.body?.cancel();
    });
    await t.step("with an empty body", async () => {
      const response = await service.request("/v1/dev/token", { method: "POST" });
      assert.equal(response.status, 200);
      assert.equal(typeof (await response.json()).token, "string");
    });
    await t.step("but not one signed with the test secret", async () => {
      const response = await service.request("/v1/jobs/x", {
        headers: bearer(await service.token("alice")),
      });
      assert.equal(response.status, 401);
      await response.body?.cancel();
    });
  }, { env: { DEV_MODE: "1", JWT_SECRET: "" } });
});

async function devToken(service: TestService, sub: string): Promise<string> {
  const response = await service.request("/v1/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub }),
  });
  return (await response.json()).token;
}

Deno.test("DEV_MODE with a configured JWT key never signs dev tokens", async (t) => {
  const { publicKey } = await generateKeyPair("ES256");
  const keys: [string, Record<string, string>][] = [
    ["JWT_SECRET", {}],
    ["JWT_PUBLIC_KEY", { JWT_SECRET: "", JWT_PUBLIC_KEY: await exportSPKI(publicKey) }],
    ["JWT_JWKS_URL", { JWT_SECRET: "", JWT_JWKS_URL: "http://127.0.0.1:9/jwks.json" }],
  ];
  for (const [name, env] of keys) {
    await t.step(name, async () => {
      const records: LogRecord[] = [];
      await configure({
        reset: true,
        sinks: { memory: (record: LogRecord) => void records.push(record) },
        loggers: [{ category: ["imagejobs"], lowestLevel: "warning", sinks: ["memory"] }],
      });
      try {
        await withService(async (service) => {
          assert.equal(service.runtime.devToken, null);
          assert.equal(service.runtime.deps.auth.sign, undefined);
          const response = await service.request("/v1/dev/token", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ sub: "anyone" }),
          });
          assert.equal(response.status, 404);
          const unknown = await service.request("/v1/no-such-route", { method: "POST" });
          assert.deepEqual(await response.json(), await unknown.json());
        }, { env: { DEV_MODE: "1", ...env } });
        const said = records.map((record) => record.message.join(""));
        assert.ok(said.some((line) => /dev tokens are off/.test(line)), said.join("\n"));
      } finally {
        await reset();
      }
    });
  }
});
