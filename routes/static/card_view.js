// One job's card on screen: prompt, status, timeline with elapsed times, the image (by its ticket
// URL, never inline data) with download and copy-link, the error, and a cancel button while it runs.

import { api, imageBlobUrl } from "./api.js";

/** Types after which a job changes no more. */
export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

const LABELS = {
  queued: "Queued",
  started: "Started",
  succeeded: "Succeeded",
  failed: "Failed",
  canceled: "Canceled",
};
const EXTENSIONS = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/webp": "webp",
  "image/gif": "gif",
};

/** The time from an ISO time to `toMs`, for people: "350 ms", "4.2 s", "2 min 5 s". */
export function duration(fromIso, toMs) {
  const ms = Math.max(0, toMs - Date.parse(fromIso));
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** The DOM of one card; `onCanceled(job)` gets the job's state after a cancel. */
export class CardView {
  #job;
  #onCanceled;
  #el;

  constructor(job, { onCanceled, onEdit }) {
    this.#job = job;
    this.#onCanceled = onCanceled;
    const root = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
    const $ = (selector) => root.querySelector(selector);
    this.#el = {
      root,
      badge: $(".badge"),
      elapsed: $(".elapsed"),
      timeline: $(".timeline"),
      error: $(".card-error"),
      result: $(".result"),
      img: $("img"),
      download: $(".download"),
      copy: $(".copy"),
      copied: $(".copied"),
      cancel: $(".cancel"),
      more: $(".more-images"),
    };
    root.dataset.id = job.id;
    root.setAttribute("aria-label", `Job ${job.id}`);
    $(".prompt").textContent = job.prompt;
    $(".job-id").textContent = job.aspect ? `${job.id} · ${job.aspect}` : job.id;
    this.#el.cancel.addEventListener("click", () => this.#cancel());
    this.#el.copy.addEventListener("click", () => this.#copy());
    $(".edit").addEventListener("click", () => onEdit(job.id));
    this.#el.img.addEventListener("error", () => this.#imageFailed());
  }

  /** The card's element. */
  get root() {
    return this.#el.root;
  }

  /** Redraws from the job's state. */
  render() {
    const job = this.#job;
    const el = this.#el;
    el.root.dataset.status = job.status;
    el.badge.textContent = job.status;
    el.badge.className = `badge ${job.status}`;
    el.timeline.replaceChildren(...job.rows.map((row) => {
      const item = document.createElement("li");
      item.className = `step ${row.type}`;
      const label = document.createElement("span");
      label.textContent = LABELS[row.type] ?? row.type;
      const time = document.createElement("time");
      time.dateTime = row.at;
      time.textContent = `+${duration(job.created, Date.parse(row.at))}`;
      time.title = new Date(row.at).toLocaleTimeString();
      item.append(label, time);
      return item;
    }));
    const end = job.rows.find((row) => TERMINAL.has(row.type));
    el.cancel.hidden = Boolean(end);
    el.error.hidden = !end?.error;
    el.error.textContent = end?.error ?? "";
    if (job.status === "succeeded" && el.result.hidden) this.#showImage();
    this.tick();
  }

  /** Updates the elapsed time. */
  tick() {
    const job = this.#job;
    const end = job.rows.find((row) => TERMINAL.has(row.type));
    this.#el.elapsed.textContent = end
      ? `took ${duration(job.created, Date.parse(end.at))}`
      : `${job.status} for ${duration(job.created, Date.now())}`;
  }

  async #showImage(fresh = false) {
    const job = this.#job;
    const el = this.#el;
    el.result.hidden = false;
    const mime = job.rows.find((row) => row.mime)?.mime ?? "";
    let src = job.urls.image;
    if (!src || fresh) {
      try {
        src = await imageBlobUrl(job.id);
      } catch (error) {
        el.error.hidden = false;
        el.error.textContent = `Cannot show the image: ${error.message}`;
        return;
      }
    }
    el.img.src = src;
    el.img.alt = `Generated image: ${job.prompt}`;
    el.download.href = src;
    el.download.download = `${job.id}.${EXTENSIONS[mime] ?? "img"}`;
    el.copy.hidden = src.startsWith("blob:");
    this.#showMore();
  }

  /** The job's other images (n > 1), by their ticket links, each a link to itself. */
  #showMore() {
    const job = this.#job;
    const more = (job.images ?? []).slice(1);
    this.#el.more.hidden = more.length === 0;
    this.#el.more.replaceChildren(...more.map((image, i) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = image.url;
      link.download = `${job.id}-${i + 1}.${EXTENSIONS[image.mime_type] ?? "img"}`;
      const img = document.createElement("img");
      img.src = image.url;
      img.alt = `Generated image ${i + 2}: ${job.prompt}`;
      link.append(img);
      item.append(link);
      return item;
    }));
  }

  /** A ticket link that stopped working (expired): fetch the image with the token instead, once. */
  #imageFailed() {
    if (!this.#el.img.src.startsWith("blob:")) this.#showImage(true);
  }

  async #copy() {
    const link = new URL(this.#el.img.getAttribute("src"), location.href).href;
    try {
      await navigator.clipboard.writeText(link);
      this.#el.copied.textContent = "Link copied (valid for a few minutes)";
    } catch {
      this.#el.copied.textContent = link;
    }
  }

  async #cancel() {
    const { cancel, error } = this.#el;
    const path = `/v1/jobs/${encodeURIComponent(this.#job.id)}`;
    cancel.disabled = true;
    try {
      await api(path, { method: "DELETE" });
      this.#onCanceled(await api(path));
    } catch (failure) {
      error.hidden = false;
      error.textContent = failure.status === 409
        ? "Cannot cancel: the job already ended"
        : `Cannot cancel: ${failure.message}`;
    } finally {
      cancel.disabled = false;
    }
  }
}
