// The page: sign in (dev token or a pasted JWT), submit prompts, follow every job live, list them.

import { api, devToken, setToken, subjectOf, token } from "./api.js";
import { Cards } from "./cards.js";
import { Feed, forgetCursor } from "./feed.js";
import { History } from "./history.js";

const $ = (id) => document.getElementById(id);
/** How long a submit waits for the live stream to be open, so that it misses none of the job's events. */
const FEED_WAIT_MS = 5_000;

let live = Promise.withResolvers();
let countdown = 0;
/** The reference image the next submit edits (`job:<id>`), or "" to draw from nothing. */
let editing = "";

const cards = new Cards({
  list: $("cards"),
  empty: $("no-cards"),
  onEnd: () => history.refreshSoon(),
  onEdit: (id) => startEditing(id),
});

/** Makes the next submit an edit of the first image of job `id`. */
function startEditing(id) {
  editing = `job:${id}`;
  $("editing-ref").textContent = id;
  $("editing").hidden = false;
  $("prompt").value = "";
  $("prompt").focus();
}

function stopEditing() {
  editing = "";
  $("editing").hidden = true;
}
const history = new History({
  list: $("history"),
  more: $("history-more"),
  empty: $("history-empty"),
  error: $("history-error"),
  onUnauthorized: (error) => signOut(error.message),
});
const feed = new Feed({
  onEvent: (notification, cursor) => {
    cards.apply(notification, cursor);
    history.refreshSoon(); // any job of the owner, from this tab or elsewhere
  },
  onReset: () => {
    cards.reconcile();
    history.refresh();
  },
  onState: (state, { resumed = false } = {}) => {
    $("live").textContent = state === "live" ? "live" : "reconnecting…";
    $("live").dataset.state = state;
    if (state !== "live") return;
    live.resolve();
    // Without a resume point, events from before this connection are not replayed: ask instead.
    if (!resumed) cards.reconcile();
  },
  onUnauthorized: (error) => signOut(error.message),
});

function signedIn() {
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = subjectOf(token()) || "signed in";
  $("live").textContent = "connecting…";
  $("token-error").textContent = "";
  cards.restore();
  feed.start();
  history.refresh();
}

function signOut(message = "") {
  feed.stop();
  live = Promise.withResolvers();
  setToken("");
  forgetCursor();
  cards.clear();
  history.clear();
  stopEditing();
  $("workspace").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("token-error").textContent = message;
  $("token").focus();
}

function showError(error) {
  const fields = { prompt: "prompt-error", aspect_ratio: "aspect-error", n: "count-error" };
  const target = $(fields[error.field] ?? "submit-error");
  target.textContent = error.message;
  if (error.field === "prompt") $("prompt").setAttribute("aria-invalid", "true");
  if (error.retryAfter) holdSubmit(error.retryAfter, target);
}

/** Keeps Generate disabled for `seconds`, counting down in `target`. */
function holdSubmit(seconds, target) {
  clearInterval(countdown);
  const button = $("generate");
  const end = Date.now() + seconds * 1000;
  button.disabled = true;
  countdown = setInterval(() => {
    const left = Math.ceil((end - Date.now()) / 1000);
    if (left > 0) {
      target.textContent = target.textContent.replace(/\d+ s\.$/, `${left} s.`);
      return;
    }
    clearInterval(countdown);
    countdown = 0;
    button.disabled = false;
    target.textContent = "";
  }, 250);
}

async function submit(event) {
  event.preventDefault();
  for (const id of ["prompt-error", "aspect-error", "count-error", "submit-error"]) {
    $(id).textContent = "";
  }
  $("prompt").removeAttribute("aria-invalid");
  const prompt = $("prompt").value;
  const aspect = $("aspect").value;
  const button = $("generate");
  button.disabled = true;
  try {
    await Promise.race([live.promise, new Promise((done) => setTimeout(done, FEED_WAIT_MS))]);
    const body = aspect ? { prompt, aspect_ratio: aspect } : { prompt };
    const n = Number($("count").value);
    if (n > 1) body.n = n;
    if (editing) body.images = [editing];
    const answer = await api("/v1/images", { method: "POST", body });
    cards.add(answer, prompt.trim(), aspect);
    stopEditing();
  } catch (error) {
    showError(error);
  } finally {
    if (!countdown) button.disabled = false;
  }
}

$("dev-token").addEventListener("click", async () => {
  try {
    setToken(await devToken());
    signedIn();
    $("prompt").focus();
  } catch (error) {
    $("token-error").textContent = `Cannot get a dev token: ${error.message}`;
  }
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim().replace(/^Bearer\s+/i, "");
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(value)) {
    $("token-error").textContent = "This is not a JWT: expected three dot-separated parts.";
    return;
  }
  $("token").value = "";
  setToken(value);
  signedIn();
  $("prompt").focus();
});

$("sign-out").addEventListener("click", () => signOut());
$("editing-stop").addEventListener("click", () => stopEditing());
$("submit-form").addEventListener("submit", submit);
$("history-refresh").addEventListener("click", () => history.refresh());

$("dev-box").hidden = document.body.dataset.devToken !== "on";
if (token()) signedIn();
