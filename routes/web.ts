/** `GET /`: a small page to try the service from a browser. */
import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { AppDeps, AppEnv } from "./deps.ts";

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image jobs</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea, input { width: 100%; box-sizing: border-box; font: inherit; padding: .5rem; }
  button { font: inherit; padding: .5rem 1rem; margin-top: .5rem; }
  #log { font: 13px ui-monospace, monospace; background: #f5f5f5; padding: .5rem; white-space: pre-wrap; min-height: 3rem; }
  img { max-width: 100%; margin-top: 1rem; border-radius: 6px; }
  .muted { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>Image jobs</h1>
<p class="muted">Submit a prompt; the job is queued, drawn, and its events stream back live.
See <a href="/docs">the API reference</a> and <a href="/openapi.json">openapi.json</a>.</p>
<label>Bearer token <input id="token" autocomplete="off" placeholder="JWT"></label>
<button id="dev" type="button">Get a dev token</button>
<form id="form">
  <label>Prompt <textarea id="prompt" rows="3" maxlength="4000" required>a red fox in snow</textarea></label>
  <button type="submit">Generate</button>
</form>
<h2>Events</h2>
<div id="log"></div>
<img id="image" alt="" hidden>
<script>
const $ = (id) => document.getElementById(id);
const log = (line) => { $("log").textContent += line + "\\n"; };
$("dev").onclick = async () => {
  const res = await fetch("/v1/dev/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  const body = await res.json();
  if (res.ok) $("token").value = body.token; else log("dev token: " + body.error.message);
};
$("form").onsubmit = async (event) => {
  event.preventDefault();
  $("log").textContent = "";
  $("image").hidden = true;
  const res = await fetch("/v1/images", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + $("token").value.trim() },
    body: JSON.stringify({ prompt: $("prompt").value }),
  });
  const body = await res.json();
  if (!res.ok) return log(res.status + " " + body.error.message);
  log("job " + body.id + ": " + body.status);
  const source = new EventSource(body.urls.events);
  for (const type of ["queued", "started", "succeeded", "failed", "canceled"]) {
    source.addEventListener(type, (e) => {
      const n = JSON.parse(e.data);
      log(e.lastEventId + " " + type + (n.error ? ": " + n.error : ""));
      if (n.data && n.data.image) { $("image").src = n.data.image; $("image").hidden = false; }
      if (type !== "queued" && type !== "started") source.close();
    });
  }
};
</script>
</body>
</html>`;

/** The web page route. */
export function webRoutes(_deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get(
    "/",
    secureHeaders({
      contentSecurityPolicy: {
        defaultSrc: ["'self'"],
        imgSrc: ["'self'", "data:"],
        styleSrc: ["'unsafe-inline'"],
        scriptSrc: ["'unsafe-inline'"],
        connectSrc: ["'self'"],
      },
    }),
    (c) => c.html(PAGE),
  );
  app.get("/favicon.ico", (c) => c.body(null, 204));
  return app;
}
