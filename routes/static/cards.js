// The jobs started in this tab: one card each, with a live timeline (queued → started → an end),
// its image or its error, and a cancel button while it runs. Cards are kept in session storage with
// the events they have shown, so a reload redraws them and the stream resumes after the last one.

import { api, ApiError } from "./api.js";
import { CardView, TERMINAL } from "./card_view.js";

const CARDS_KEY = "imagejobs.cards";
const MAX_CARDS = 30;

/** The cards of this tab, newest first. */
export class Cards {
  #list;
  #empty;
  #onEnd;
  #onEdit;
  #jobs = [];
  #views = new Map();
  /** Events of jobs with no card yet (their submit answer is still on its way), by job id. */
  #early = new Map();
  #ticker = 0;

  constructor({ list, empty, onEnd, onEdit }) {
    this.#list = list;
    this.#empty = empty;
    this.#onEnd = onEnd;
    this.#onEdit = onEdit;
  }

  /** Draws the cards saved in this tab. */
  restore() {
    try {
      this.#jobs = JSON.parse(sessionStorage.getItem(CARDS_KEY) ?? "[]");
    } catch {
      this.#jobs = [];
    }
    for (const job of [...this.#jobs].reverse()) this.#draw(job);
    this.#refresh();
  }

  /** Forgets every card (sign-out). */
  clear() {
    sessionStorage.removeItem(CARDS_KEY);
    this.#jobs = [];
    this.#early.clear();
    for (const view of this.#views.values()) view.root.remove();
    this.#views.clear();
    this.#refresh();
  }

  /** Adds the card of a job just submitted (its `202` answer). */
  add(answer, prompt, aspect) {
    if (this.#views.has(answer.id)) return;
    const job = {
      id: answer.id,
      prompt,
      aspect,
      created: answer.created_at,
      urls: answer.urls ?? {},
      status: "queued",
      rows: [],
      seen: [],
    };
    this.#jobs.unshift(job);
    if (this.#jobs.length > MAX_CARDS) {
      for (const old of this.#jobs.splice(MAX_CARDS)) this.#views.get(old.id)?.root.remove();
    }
    this.#draw(job);
    this.#addRow(job, { type: "queued", at: answer.created_at }, "");
    for (const [n, cursor] of this.#early.get(job.id) ?? []) this.apply(n, cursor);
    this.#early.delete(job.id);
    this.#save();
  }

  /** Shows one notification from the stream; returns false when it is not a job of this tab. */
  apply(n, cursor) {
    const job = this.#jobs.find((j) => j.id === n.id);
    if (!job) {
      const early = this.#early.get(n.id) ?? [];
      if (early.length < 10 && this.#early.size < 50) {
        this.#early.set(n.id, [...early, [n, cursor]]);
      }
      return false;
    }
    this.#addRow(job, n, cursor);
    this.#save();
    return true;
  }

  /** Brings every unfinished card up to date from `GET /v1/jobs/:id` (after a gap in the stream). */
  async reconcile() {
    const open = this.#jobs.filter((job) => !TERMINAL.has(job.status));
    await Promise.all(open.map(async (job) => {
      try {
        this.update(await api(`/v1/jobs/${encodeURIComponent(job.id)}`));
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          this.#addRow(
            job,
            { type: "failed", at: new Date().toISOString(), error: "Job gone" },
            "",
          );
          this.#save();
        }
      }
    }));
  }

  /** Applies a job's current state (`GET /v1/jobs/:id` shape): fresh links, and an end not shown yet. */
  update(current) {
    const job = this.#jobs.find((j) => j.id === current.id);
    if (!job) return;
    if (current.urls) job.urls = { ...job.urls, ...current.urls };
    if (current.result?.images) job.images = current.result.images;
    const at = current.updated_at ?? new Date().toISOString();
    // Rows made from a status are marked approximate: the stream's own event replaces them.
    if (current.status === "running" && !job.rows.some((r) => r.type === "started")) {
      this.#addRow(job, { type: "started", at, approx: true }, "");
    } else if (TERMINAL.has(current.status)) {
      this.#addRow(job, { type: current.status, at, error: current.error, approx: true }, "");
    }
    this.#save();
  }

  #addRow(job, n, cursor) {
    const key = cursor || `${n.type}@${n.at}`;
    if (job.seen.includes(key) || job.rows.some((r) => r.at === n.at && r.type === n.type)) return;
    const row = { type: n.type, at: n.at };
    if (n.error) row.error = n.error;
    if (n.data?.mime_type) row.mime = n.data.mime_type;
    if (n.data?.images) job.images = n.data.images;
    if (n.approx) row.approx = true;
    const guess = job.rows.findIndex((r) => r.approx && r.type === n.type);
    if (guess >= 0 && !n.approx) {
      job.rows[guess] = { ...job.rows[guess], ...row, approx: undefined };
      job.seen = [...job.seen.slice(-20), key];
      this.#render(job);
      return;
    }
    // One queued and one end per job (`started` comes again on a retry); nothing after the end.
    if (n.type !== "started" && job.rows.some((r) => r.type === n.type)) return;
    if (TERMINAL.has(job.status)) return;
    job.seen = [...job.seen.slice(-20), key];
    job.rows.push(row);
    job.status = n.type === "started" ? "running" : n.type;
    this.#render(job);
    if (TERMINAL.has(job.status)) this.#onEnd(job);
  }

  #draw(job) {
    const view = new CardView(job, {
      onCanceled: (current) => this.update(current),
      onEdit: (id) => this.#onEdit(id),
    });
    this.#views.set(job.id, view);
    this.#list.prepend(view.root);
    this.#render(job);
  }

  #render(job) {
    this.#views.get(job.id)?.render();
    this.#refresh();
  }

  /** Shows or hides the empty note; runs the clock while a card is unfinished. */
  #refresh() {
    this.#empty.hidden = this.#jobs.length > 0;
    const running = this.#jobs.some((job) => !TERMINAL.has(job.status));
    if (running && !this.#ticker) {
      this.#ticker = setInterval(() => {
        for (const job of this.#jobs) {
          if (!TERMINAL.has(job.status)) this.#views.get(job.id)?.tick();
        }
      }, 250);
    } else if (!running && this.#ticker) {
      clearInterval(this.#ticker);
      this.#ticker = 0;
    }
  }

  #save() {
    sessionStorage.setItem(CARDS_KEY, JSON.stringify(this.#jobs));
  }
}
