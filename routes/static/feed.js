// One live stream of every notification of the signed-in owner: `GET /v1/events` read with fetch()
// (an EventSource cannot send the Authorization header that route needs), parsed as Server-Sent
// Events, and resumed with Last-Event-ID after a drop or a reload (the cursor is kept in session
// storage, saved only once the event it follows has been handled).

import { apiError, token } from "./api.js";

const CURSOR_KEY = "imagejobs.cursor";
/** Nothing at all (not even a keepalive comment) for this long: the stream is dead, reconnect. */
const SILENCE_MS = 45_000;
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;

/** The saved resume point ("" for none). */
export function savedCursor() {
  return sessionStorage.getItem(CURSOR_KEY) ?? "";
}

/** Forgets the resume point (on sign-out). */
export function forgetCursor() {
  sessionStorage.removeItem(CURSOR_KEY);
}

/** Splits SSE text into events; returns the events and the unfinished rest. */
export function parseEvents(text) {
  const events = [];
  const blocks = text.split(/\r\n\r\n|\n\n|\r\r/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const event = { id: undefined, type: "message", data: [] };
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") event.id = value;
      else if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
    }
    events.push({ ...event, data: event.data.join("\n") });
  }
  return { events, rest };
}

/** The stream, reconnecting until stopped; callbacks: onEvent, onReset, onState, onUnauthorized. */
export class Feed {
  #handlers;
  #controller = null;
  #timer = 0;
  #running = false;
  #generation = 0;
  #delay = MIN_DELAY_MS;

  constructor(handlers) {
    this.#handlers = handlers;
  }

  /** Connects (once; later calls do nothing while it runs). */
  start() {
    if (this.#running) return;
    this.#running = true;
    this.#loop(++this.#generation);
  }

  /** Closes the stream and stops reconnecting. */
  stop() {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#controller?.abort();
  }

  /** Reconnects until stopped; a loop from before the latest start() ends at its next step. */
  async #loop(generation) {
    const current = () => this.#running && generation === this.#generation;
    while (current()) {
      try {
        await this.#connect();
      } catch (error) {
        if (!current()) return;
        if (error?.status === 401) {
          this.stop();
          this.#handlers.onUnauthorized(error);
          return;
        }
        if (error?.retryAfter) this.#delay = error.retryAfter * 1000;
      }
      if (!current()) return;
      this.#handlers.onState("reconnecting");
      await new Promise((resolve) => {
        this.#timer = setTimeout(resolve, this.#delay);
      });
      this.#delay = Math.min(this.#delay * 2, MAX_DELAY_MS);
    }
  }

  async #connect() {
    const controller = this.#controller = new AbortController();
    const cursor = savedCursor();
    const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
    if (cursor) headers["Last-Event-ID"] = cursor;
    const response = await fetch("/v1/events", {
      headers,
      cache: "no-store",
      signal: controller.signal,
    });
    if (!response.ok) throw await apiError(response);
    this.#delay = MIN_DELAY_MS;
    this.#handlers.onState("live", { resumed: Boolean(cursor) });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let silence = setTimeout(() => controller.abort(), SILENCE_MS);
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(silence);
        silence = setTimeout(() => controller.abort(), SILENCE_MS);
        const { events, rest } = parseEvents(buffer + value);
        buffer = rest;
        for (const event of events) this.#dispatch(event);
      }
    } finally {
      clearTimeout(silence);
      controller.abort();
    }
  }

  #dispatch(event) {
    if (event.retry !== undefined) this.#delay = Math.max(event.retry, MIN_DELAY_MS);
    if (event.type === "reset") {
      // The missed events are gone: start over from here (the old point is useless) and re-read.
      this.#save(event.id ?? "");
      this.#handlers.onReset();
      return;
    }
    if (event.data) {
      let notification;
      try {
        notification = JSON.parse(event.data);
      } catch {
        notification = null;
      }
      if (notification?.id) this.#handlers.onEvent(notification, event.id ?? "");
    }
    this.#save(event.id);
  }

  #save(id) {
    if (id === undefined) return;
    if (id) sessionStorage.setItem(CURSOR_KEY, id);
    else forgetCursor();
  }
}
