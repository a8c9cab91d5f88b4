// The service's HTTP API as the page uses it: the token (session storage only) and calls that
// turn error answers into sentences a person can act on.

const TOKEN_KEY = "imagejobs.token";

/** The signed-in token, or "" when signed out. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

/** Keeps `value` as this tab's token ("" signs out). */
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The `sub` claim of a JWT, for display only (the server verifies it). */
export function subjectOf(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub ?? "";
  } catch {
    return "";
  }
}

/** An error answer of the API, in words. */
export class ApiError extends Error {
  constructor(status, code, message, { field = "", retryAfter = 0 } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

/** Seconds from a Retry-After header (delta or date), at least 1. */
function retryAfterOf(response) {
  const value = response.headers.get("Retry-After") ?? "";
  const seconds = /^\d+$/.test(value) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(1, Math.ceil(seconds)) : 1;
}

/** Turns an error answer into an ApiError whose message says what happened and what to do. */
export async function apiError(response) {
  const body = await response.json().catch(() => null);
  const code = body?.error?.code ?? "error";
  const said = body?.error?.message ?? `The service answered ${response.status}`;
  if (response.status === 401) {
    return new ApiError(401, code, `Your token was refused (${said}). Sign in again.`);
  }
  if (response.status === 429 || response.status === 503) {
    const retryAfter = retryAfterOf(response);
    const what = response.status === 429 ? "Too many requests" : "The service is busy";
    return new ApiError(response.status, code, `${what}: try again in ${retryAfter} s.`, {
      retryAfter,
    });
  }
  if (response.status === 400 || response.status === 422) {
    // "Cannot accept the request: prompt must be ..." names the field first.
    const detail = said.replace(/^Cannot accept the request: /, "");
    const field = /^(prompt|Prompt|aspect_ratio|id|model)\b/.exec(detail)?.[1] ?? "";
    return new ApiError(response.status, code, detail.charAt(0).toUpperCase() + detail.slice(1), {
      field: field.toLowerCase(),
    });
  }
  return new ApiError(response.status, code, said);
}

/** Calls the API with the token; resolves to the parsed JSON, throws an ApiError on an error answer. */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, signal, headers: { ...headers } };
  const jwt = token();
  if (jwt) init.headers.Authorization = `Bearer ${jwt}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await apiError(response);
  return response.status === 204 ? null : await response.json();
}

/** Asks a DEV_MODE service for a token. */
export async function devToken() {
  const response = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok) throw await apiError(response);
  return (await response.json()).token;
}

/** An object URL of a job's image fetched with the token (when no ticket URL is at hand). */
export async function imageBlobUrl(id) {
  const response = await fetch(`/v1/jobs/${encodeURIComponent(id)}/image`, {
    headers: { Authorization: `Bearer ${token()}` },
  });
  if (!response.ok) throw await apiError(response);
  return URL.createObjectURL(await response.blob());
}
