/** Checks real responses against the app's own OpenAPI document: documented status, content type, schema. */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { AssertionError } from "node:assert";

/** A parsed JSON value of the document (untyped on purpose: it is whatever the app serves). */
// deno-lint-ignore no-explicit-any
export type Json = any;

/** An app that answers requests in memory, as Hono's `app.request` does. */
export interface RequestApp {
  request(input: string, init?: RequestInit): Response | Promise<Response>;
}

/** One operation of the document, found for a request. */
export interface FoundOperation {
  /** The documented path template, e.g. `/v1/jobs/{id}`. */
  template: string;
  /** The method, lower case. */
  method: string;
  /** The Operation Object (null when the path is documented but not this method). */
  operation: Json | null;
}

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** True for a JSON media type (`application/json`, `application/problem+json`, ...). */
export function isJsonMediaType(type: string): boolean {
  return /^application\/(?:[\w.-]+\+)?json$/i.test(type);
}

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

/** The app's OpenAPI document with a JSON Schema 2020-12 validator over its schemas. */
export class OpenApiChecker {
  readonly #ajv: Ajv2020;
  readonly #validators = new WeakMap<object, ValidateFunction>();
  readonly #paths: { template: string; pattern: RegExp; params: number }[];
  readonly #prefixes: string[];

  /** Wraps a parsed document (OpenAPI 3.1). */
  constructor(readonly document: Json) {
    this.#ajv = new Ajv2020({ strict: false, allErrors: true, unicodeRegExp: false });
    addFormats(this.#ajv);
    this.#ajv.addSchema(document, "openapi");
    this.#paths = Object.keys(document.paths ?? {}).map((template) => ({
      template,
      pattern: templatePattern(template),
      params: (template.match(/\{[^}]+\}/g) ?? []).length,
    })).sort((a, b) => a.params - b.params);
    this.#prefixes = serverPrefixes(document);
  }

  /** Follows `$ref`s to non-schema objects (responses, parameters, path items) inside the document. */
  deref(value: Json): Json {
    for (let hops = 0; value && typeof value.$ref === "string" && hops < 20; hops++) {
      value = this.pointer(value.$ref);
    }
    return value;
  }

  /** The value at a local reference such as `#/components/responses/NotFound`. */
  pointer(ref: string): Json {
    return jsonPointer(this.document, ref);
  }

  /** Every documented operation as `{template, method, operation}`. */
  operations(): FoundOperation[] {
    const found: FoundOperation[] = [];
    for (const [template, rawItem] of Object.entries(this.document.paths ?? {})) {
      const item = this.deref(rawItem);
      for (const method of METHODS) {
        if (item[method]) found.push({ template, method, operation: item[method] });
      }
    }
    return found;
  }

  /** The operation a request reaches, or null when no documented path matches. */
  find(method: string, url: string): FoundOperation | null {
    let path = new URL(url, "http://localhost").pathname;
    const prefix = this.#prefixes.find((p) => path === p || path.startsWith(p + "/"));
    if (prefix) path = path.slice(prefix.length) || "/";
    const entry = this.#paths.find(({ pattern }) => pattern.test(path));
    if (!entry) return null;
    const item = this.deref(this.document.paths[entry.template]);
    let lower = method.toLowerCase();
    // Hono answers HEAD with its GET route; the document need not list HEAD separately.
    if (lower === "head" && !item.head) lower = "get";
    return { template: entry.template, method: lower, operation: item[lower] ?? null };
  }

  /**
   * Checks one exchange; returns the problems found (empty when it conforms). Requests to paths the
   * document does not describe, and undocumented methods on documented paths, are not checked here.
   */
  check(
    method: string,
    url: string,
    status: number,
    contentType: string | null,
    body?: { json: unknown } | { invalid: string },
  ): string[] {
    const found = this.find(method, url);
    if (!found?.operation) return [];
    const responses = found.operation.responses ?? {};
    const key = [String(status), `${String(status)[0]}XX`, "default"].find((k) => k in responses);
    if (key === undefined) {
      return [
        `status ${status} is not documented (documented: ${Object.keys(responses).join(", ")})`,
      ];
    }
    const response = this.deref(responses[key]);
    const content: Record<string, Json> = response.content ?? {};
    const mediaType = contentType?.split(";")[0].trim().toLowerCase() ?? null;
    const noBody = status === 101 || status === 204 || status === 304 ||
      method.toUpperCase() === "HEAD";
    if (noBody || mediaType === null) {
      if (mediaType === null && Object.keys(content).length > 0 && !noBody) {
        return [`no Content-Type, but the document promises ${Object.keys(content).join(", ")}`];
      }
      return [];
    }
    const documented = Object.keys(content).find((type) => mediaTypeMatches(type, mediaType));
    if (documented === undefined) {
      const listed = Object.keys(content).join(", ") || "no body";
      return [`Content-Type ${mediaType} is not documented for ${key} (documented: ${listed})`];
    }
    if (!isJsonMediaType(mediaType) || body === undefined) return [];
    if ("invalid" in body) return [`the body is not JSON: ${body.invalid}`];
    const schema = content[documented].schema;
    if (!schema) return [`${key} ${documented} has no schema`];
    const validate = this.#validator(schema);
    if (validate(body.json)) return [];
    return (validate.errors ?? []).slice(0, 5).map((error) =>
      `body${error.instancePath || ""} ${error.message}` +
      (error.params && Object.keys(error.params).length ? ` ${JSON.stringify(error.params)}` : "")
    );
  }

  /** Reads a response (a clone, when its body is JSON) and checks it. */
  async checkResponse(method: string, url: string, response: Response): Promise<string[]> {
    const contentType = response.headers.get("Content-Type");
    const mediaType = contentType?.split(";")[0].trim() ?? "";
    let body: { json: unknown } | { invalid: string } | undefined;
    if (isJsonMediaType(mediaType) && response.body && this.find(method, url)?.operation) {
      const text = await response.clone().text();
      try {
        body = { json: JSON.parse(text) };
      } catch (error) {
        body = { invalid: `${(error as Error).message}: ${text.slice(0, 80)}` };
      }
    }
    return this.check(method, url, response.status, contentType, body);
  }

  #validator(schema: Json): ValidateFunction {
    if (typeof schema !== "object" || schema === null) return this.#ajv.compile(schema);
    let validate = this.#validators.get(schema);
    if (!validate) {
      // References point into the document (`#/components/...`): resolve them there.
      validate = this.#ajv.compile(inDocument(schema));
      this.#validators.set(schema, validate);
    }
    return validate;
  }
}

/** A copy of a schema whose local references (`#/...`) name the document added as `openapi`. */
function inDocument(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(inDocument);
  if (schema === null || typeof schema !== "object") return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([key, value]) =>
      key === "$ref" && typeof value === "string" && value.startsWith("#")
        ? [key, `openapi${value}`]
        : [key, inDocument(value)]
    ),
  );
}

/** The value at `#/a/b` (a URI fragment JSON pointer) inside `root`. */
export function jsonPointer(root: Json, ref: string): Json {
  if (!ref.startsWith("#")) {
    throw new Error(`Cannot follow ${ref}: only local references are supported`);
  }
  let value: Json = root;
  for (const raw of ref.slice(1).split("/").slice(1)) {
    value = value?.[decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~")];
  }
  if (value === undefined) throw new Error(`Cannot follow ${ref}: nothing there`);
  return value;
}

/** A regular expression matching concrete paths of a template such as `/v1/jobs/{id}`. */
function templatePattern(template: string): RegExp {
  const source = template.split(/(\{[^}]+\})/).map((part) =>
    part.startsWith("{") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  ).join("");
  return new RegExp(`^${source}$`);
}

/** Path prefixes of the document's servers (`https://host/api` gives `/api`); `/` gives none. */
function serverPrefixes(document: Json): string[] {
  const prefixes: string[] = [];
  for (const server of document.servers ?? []) {
    const path = new URL(String(server.url ?? "/"), "http://localhost").pathname.replace(
      /\/+$/,
      "",
    );
    if (path) prefixes.push(path);
  }
  return prefixes;
}

/** True when a documented media type (possibly a range such as `image/*`) covers the actual one. */
function mediaTypeMatches(documented: string, actual: string): boolean {
  const [type, subtype] = documented.split(";")[0].trim().toLowerCase().split("/");
  const [actualType, actualSubtype] = actual.split("/");
  return (type === "*" || type === actualType) && (subtype === "*" || subtype === actualSubtype);
}

const checkers = new Map<string, OpenApiChecker>();

/** A checker for the document `app` serves, loaded once and shared by apps serving the same text. */
export function documentOf(app: RequestApp): () => Promise<OpenApiChecker> {
  let loading: Promise<OpenApiChecker> | null = null;
  return () =>
    loading ??= (async () => {
      const response = await app.request("/openapi.json");
      const text = await response.text();
      if (response.status !== 200) {
        throw new Error(
          `Cannot load the OpenAPI document: /openapi.json answered ${response.status}`,
        );
      }
      let checker = checkers.get(text);
      if (!checker) checkers.set(text, checker = new OpenApiChecker(JSON.parse(text)));
      return checker;
    })();
}

/** One line naming the exchange and what is wrong with it. */
export function describeViolation(
  method: string,
  url: string,
  status: number,
  problems: string[],
): string {
  const path = new URL(url, "http://localhost");
  return `Cannot match the OpenAPI document: ${method.toUpperCase()} ${path.pathname}${path.search} ` +
    `answered ${status}: ${problems.join("; ")}`;
}

/** Wraps `app.request` so every response is checked; a response that breaks the document throws. */
export function checkedRequests<A extends RequestApp>(
  app: A,
  checker: () => Promise<OpenApiChecker>,
): A {
  const request = async (input: string | Request | URL, init?: RequestInit, ...rest: unknown[]) => {
    const method = init?.method ?? (input instanceof Request ? input.method : "GET");
    const url = input instanceof Request ? input.url : String(input);
    // deno-lint-ignore no-explicit-any
    const response: Response = await (app.request as any)(input, init, ...rest);
    const problems = await (await checker()).checkResponse(method, url, response);
    if (problems.length > 0) {
      throw new AssertionError({
        message: describeViolation(method, url, response.status, problems),
      });
    }
    return response;
  };
  return new Proxy(app, {
    get: (target, name, receiver) =>
      name === "request" ? request : Reflect.get(target, name, receiver),
  });
}

/** Wraps a server handler so every response is checked, keeping violations in `violations`. */
export function checkedFetch<Args extends unknown[]>(
  fetch: (request: Request, ...args: Args) => Response | Promise<Response>,
  checker: () => Promise<OpenApiChecker>,
  violations: string[],
): (request: Request, ...args: Args) => Promise<Response> {
  return async (request, ...args) => {
    const { method, url } = request;
    const response = await fetch(request, ...args);
    try {
      const problems = await (await checker()).checkResponse(method, url, response);
      if (problems.length) {
        violations.push(describeViolation(method, url, response.status, problems));
      }
    } catch (error) {
      violations.push(`Cannot check ${method} ${url}: ${(error as Error).message}`);
    }
    return response;
  };
}
