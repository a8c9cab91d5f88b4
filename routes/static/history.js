// "My jobs": the signed-in owner's jobs from `GET /v1/jobs`, newest first, a page at a time, with a
// thumbnail for each finished image.

import { api, imageBlobUrl } from "./api.js";

/** Jobs per page. */
export const PAGE_SIZE = 8;

/** The list of the owner's jobs. */
export class History {
  #list;
  #more;
  #empty;
  #error;
  #next = null;
  #pages = 0;
  #loading = null;
  #soon = 0;
  #blobs = [];
  #shown = new Map();
  #onUnauthorized;

  constructor({ list, more, empty, error, onUnauthorized }) {
    this.#onUnauthorized = onUnauthorized;
    this.#list = list;
    this.#more = more;
    this.#empty = empty;
    this.#error = error;
    more.addEventListener("click", () => this.#load(false));
  }

  /** Reloads the first page. */
  refresh() {
    return this.#load(true);
  }

  /** Reloads the first page shortly, unless older pages are open (then the reader keeps their place). */
  refreshSoon() {
    if (this.#pages > 1) return;
    clearTimeout(this.#soon);
    this.#soon = setTimeout(() => this.refresh(), 300);
  }

  /** Empties the list (sign-out). */
  clear() {
    clearTimeout(this.#soon);
    this.#list.replaceChildren();
    this.#revoke();
    this.#next = null;
    this.#pages = 0;
    this.#more.hidden = true;
    this.#empty.hidden = true;
  }

  async #load(first) {
    if (this.#loading) await this.#loading;
    this.#loading = this.#fetch(first);
    await this.#loading;
    this.#loading = null;
  }

  async #fetch(first) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (!first && this.#next) query.set("cursor", this.#next);
    this.#list.setAttribute("aria-busy", "true");
    this.#more.disabled = true;
    try {
      const page = await api(`/v1/jobs?${query}`);
      if (first) {
        this.#list.replaceChildren();
        this.#pages = 0;
      }
      this.#pages++;
      this.#error.textContent = "";
      this.#list.append(...page.data.map((job) => this.#item(job)));
      this.#next = page.next_cursor ?? null;
      this.#more.hidden = !this.#next;
      this.#empty.hidden = this.#list.childElementCount > 0;
    } catch (error) {
      this.#error.textContent = `Cannot load your jobs: ${error.message}`;
      if (error.status === 401) this.#onUnauthorized(error);
    } finally {
      this.#list.setAttribute("aria-busy", "false");
      this.#more.disabled = false;
    }
  }

  #item(job) {
    const template = document.getElementById("history-template");
    const root = template.content.firstElementChild.cloneNode(true);
    root.dataset.id = job.id;
    root.dataset.status = job.status;
    root.querySelector(".prompt").textContent = job.prompt ?? job.id;
    const badge = root.querySelector(".badge");
    badge.textContent = job.status;
    badge.className = `badge ${job.status}`;
    const time = root.querySelector("time");
    time.dateTime = job.created_at;
    time.textContent = new Date(job.created_at).toLocaleString();
    if (job.error) time.after(` · ${job.error}`);
    if (job.status === "succeeded") this.#thumbnail(root.querySelector("img"), job);
    return root;
  }

  async #thumbnail(img, job) {
    // A refresh keeps the link already shown (a new ticket would mean downloading the image again).
    let src = this.#shown.get(job.id) ?? job.urls?.image;
    img.addEventListener("error", () => this.#fallback(img, job), { once: true });
    if (!src) src = await this.#blob(job.id);
    if (!src) return;
    this.#shown.set(job.id, src);
    img.src = src;
    img.alt = `Image for: ${job.prompt ?? job.id}`;
    img.hidden = false;
  }

  /** A ticket link that stopped working (expired): fetch the image with the token instead. */
  async #fallback(img, job) {
    this.#shown.delete(job.id);
    const src = await this.#blob(job.id);
    if (!src) return;
    this.#shown.set(job.id, src);
    img.src = src;
  }

  async #blob(id) {
    try {
      const url = await imageBlobUrl(id);
      this.#blobs.push(url);
      return url;
    } catch {
      return "";
    }
  }

  #revoke() {
    for (const url of this.#blobs.splice(0)) URL.revokeObjectURL(url);
    this.#shown.clear();
  }
}
