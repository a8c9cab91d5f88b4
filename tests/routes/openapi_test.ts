/** The generated OpenAPI document is true: it lists what the app serves, links the submit answer to the
 * job's routes, answers wrong methods with 405, and passes `@redocly/cli lint`. */
import assert from "node:assert/strict";
import { bearer } from "../support/app.ts";
import { type Json, jsonPointer } from "../support/openapi_check.ts";
import { answers, devToken, NON_API, withDevService } from "../support/openapi_service.ts";

/** Hono's `/v1/jobs/:id` (maybe `:id{regex}`) as an OpenAPI template. */
function template(path: string): string {
  return path.replace(/:(\w+)(\{(?:[^{}]|\{[^}]*\})*\})?\??/g, "{$1}");
}

Deno.test("the document lists every route the app serves, and the app serves every operation", async () => {
  await withDevService(async (service) => {
    const checker = await service.openapi();
    const documented = new Set(
      checker.operations().filter(({ template }) => !NON_API.has(template))
        .map(({ method, template }) => `${method.toUpperCase()} ${template}`),
    );
    const served = new Set(
      service.runtime.app.routes
        .filter((route) => route.method !== "ALL" && !NON_API.has(template(route.path)))
        .map((route) => `${route.method} ${template(route.path)}`),
    );
    const missing: string[] = [];
    for (const route of served) {
      if (documented.has(route)) continue;
      // A method guard (405 with Allow) is not an operation.
      const [method, path] = route.split(" ");
      const response = await service.runtime.app.request(path.replace(/\{\w+\}/g, "x"), { method });
      await response.body?.cancel();
      if (response.status !== 405) missing.push(route);
    }
    assert.deepEqual(missing, [], "served but not documented");
    assert.deepEqual([...documented].filter((op) => !served.has(op)), [], "documented, not served");
  });
});

Deno.test("every operation has a unique operationId and the API ones declare their security", async () => {
  await withDevService(async (service) => {
    const checker = await service.openapi();
    const { document } = checker;
    assert.ok(Array.isArray(document.servers) && document.servers.length > 0, "no servers");
    const schemes = Object.keys(document.components?.securitySchemes ?? {});
    const ids = new Set<string>();
    for (const { method, template, operation } of checker.operations()) {
      const name = `${method.toUpperCase()} ${template}`;
      assert.equal(typeof operation.operationId, "string", `${name} has no operationId`);
      assert.ok(!ids.has(operation.operationId), `${name} repeats ${operation.operationId}`);
      ids.add(operation.operationId);
      if (!template.startsWith("/v1/") || template === "/v1/dev/token") continue;
      const security = operation.security ?? document.security ?? [];
      assert.ok(security.length > 0, `${name} declares no security`);
      for (const requirement of security) {
        for (const scheme of Object.keys(requirement)) {
          assert.ok(schemes.includes(scheme), `${name} names an unknown scheme ${scheme}`);
        }
      }
    }
  });
});

Deno.test("success bodies and the submit request are described, not just typed as objects", async () => {
  await withDevService(async (service) => {
    const checker = await service.openapi();
    const resolve = (schema: Json): Json =>
      schema?.$ref ? resolve(checker.pointer(schema.$ref)) : schema;
    for (const { method, template, operation } of checker.operations()) {
      for (const [status, raw] of Object.entries(operation.responses ?? {})) {
        const content = checker.deref(raw).content?.["application/json"];
        if (!status.startsWith("2") || !content) continue;
        const schema = resolve(content.schema);
        const described = schema?.properties || schema?.allOf || schema?.anyOf || schema?.oneOf;
        assert.ok(described, `${method.toUpperCase()} ${template} ${status} is a bare object`);
      }
    }
    const submit = checker.find("POST", "/v1/images")!.operation;
    const body = resolve(checker.deref(submit.requestBody).content["application/json"].schema);
    const branches = [body, ...(body.anyOf ?? body.oneOf ?? []).map(resolve)];
    const prompt = branches.find((b) => b.required?.includes("prompt"))?.properties?.prompt;
    assert.ok(prompt, "prompt is not required in any form of the submit body");
    assert.equal(resolve(prompt).maxLength, 4000);
    const events = checker.find("GET", "/v1/jobs/x/events")!.operation;
    const lastEventId = events.parameters.map((p: unknown) => checker.deref(p))
      .find((p: { name: string }) => p.name === "last_event_id");
    assert.ok(lastEventId?.schema?.pattern, "last_event_id has no pattern");
  });
});

Deno.test("the submit answer links to every job route, and following the links reaches the job", async () => {
  await withDevService(async (service) => {
    const checker = await service.openapi();
    const operations = checker.operations();
    const submit = checker.find("POST", "/v1/images")!.operation;
    const links = Object.values(checker.deref(submit.responses["202"]).links ?? {})
      .map((link) => checker.deref(link));
    const targets = links.map((link) => {
      const target = link.operationId
        ? operations.find((op) => op.operation.operationId === link.operationId)
        : operations.find((op) => checker.pointer(link.operationRef) === op.operation);
      assert.ok(target, `the link to ${link.operationId ?? link.operationRef} names no operation`);
      return { link, ...target };
    });
    const linked = new Set(targets.map((op) => `${op.method} ${op.template}`));
    const unlinked = operations.filter((op) => op.template.startsWith("/v1/jobs/{id}"))
      .map((op) => `${op.method} ${op.template}`).filter((op) => !linked.has(op));
    assert.deepEqual(unlinked, [], "job routes the submit answer does not link to");

    const token = await devToken(service, "linker");
    const submitted = await answers(service, 202, "/v1/images", {
      method: "POST",
      headers: bearer(token),
      body: '{"prompt":"hold on"}',
    });
    const body = await submitted.json();
    const value = (expression: unknown) => {
      if (typeof expression !== "string" || !expression.startsWith("$")) return expression;
      const header = /^\$response\.header\.(.+)$/.exec(expression);
      if (header) return submitted.headers.get(header[1]);
      assert.match(expression, /^\$response\.body#/, `unsupported link expression ${expression}`);
      return jsonPointer(body, expression.slice("$response.body".length));
    };
    // Cancel last: the job must still be there for the others.
    targets.sort((a, b) => Number(a.method === "delete") - Number(b.method === "delete"));
    for (const { link, method, template, operation } of targets) {
      const params = (operation.parameters ?? []).map((p: unknown) => checker.deref(p));
      let path = template;
      const query = new URLSearchParams();
      for (const [name, expression] of Object.entries(link.parameters ?? {})) {
        const where = params.find((p: { name: string }) => p.name === name)?.in ?? "path";
        if (where === "path") {
          path = path.replace(`{${name}}`, encodeURIComponent(value(expression)));
        } else if (where === "query") query.set(name, String(value(expression)));
      }
      assert.doesNotMatch(path, /\{/, `the link to ${method} ${template} leaves a parameter unset`);
      const url = query.size ? `${path}?${query}` : path;
      const response = await service.request(url, { method, headers: bearer(token) });
      if (operation.operationId === "getJobImage" || operation.operationId === "getJobImageAt") {
        // The held job has no image yet: the link is valid once it succeeds (404 until then).
        assert.equal(response.status, 404, `${method} ${url}`);
      } else assert.ok(response.status < 300, `${method} ${url} answered ${response.status}`);
      await response.body?.cancel();
    }
  });
});

Deno.test("a documented path answers its undocumented methods with 405 and Allow", async () => {
  await withDevService(async (service) => {
    const checker = await service.openapi();
    const byPath = new Map<string, string[]>();
    for (const { method, template } of checker.operations()) {
      byPath.set(template, [...byPath.get(template) ?? [], method.toUpperCase()]);
    }
    const wrong: string[] = [];
    for (const [template, methods] of byPath) {
      const path = template.replace(/\{\w+\}/g, "x");
      for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE"]) {
        if (methods.includes(method)) continue;
        const response = await service.request(path, { method });
        await response.body?.cancel();
        const allow = (response.headers.get("Allow") ?? "").split(",").map((m) => m.trim())
          .filter(Boolean);
        const fits = methods.every((m) => allow.includes(m)) &&
          allow.every((m) => methods.includes(m) || m === "HEAD" || m === "OPTIONS");
        if (response.status !== 405 || !fits) {
          wrong.push(`${method} ${template}: ${response.status}, Allow: ${allow.join(", ")}`);
        }
      }
    }
    assert.deepEqual(wrong, []);
  });
});

/** The linter, pinned; run through Deno's npm support, so CI needs nothing installed beforehand. */
const REDOCLY = "npm:@redocly/cli@2.77.0";

Deno.test("@redocly/cli lint finds no errors in the generated document", async () => {
  await withDevService(async (service) => {
    const dir = await Deno.makeTempDir();
    try {
      const file = `${dir}/openapi.json`;
      await Deno.writeTextFile(file, JSON.stringify((await service.openapi()).document, null, 2));
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-config", "--no-lock", REDOCLY, "lint", "--format=json", file],
        cwd: dir,
        env: { REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      let report: {
        problems: {
          ruleId: string;
          severity: string;
          message: string;
          location?: { pointer: string }[];
        }[];
      };
      try {
        report = JSON.parse(new TextDecoder().decode(output.stdout));
      } catch {
        assert.fail(`Cannot read the lint report: ${stderr}`);
      }
      const errors = report.problems.filter((p) => p.severity === "error")
        .map((p) => `${p.ruleId} at ${p.location?.[0]?.pointer}: ${p.message}`);
      assert.deepEqual(errors, [], "lint errors");
      assert.equal(output.code, 0, stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
