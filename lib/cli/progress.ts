/** The CLI's progress display: a live status line on a terminal, plain lines anywhere else. */
import { printable } from "./errors.ts";

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const CLEAR_LINE = "\r\x1b[2K";

/** Options of Progress. */
export interface ProgressOptions {
  /** Writes text to the output as it is. */
  write: (text: string) => void;
  /** True on a terminal: a spinner with the elapsed time is redrawn in place. */
  tty: boolean;
  now?: () => number;
  /** Redraw interval of the status line on a terminal (default 100 ms). */
  intervalMs?: number;
}

/** Seconds since `start`, one decimal, as "12.3s". */
export function formatElapsed(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/** Shows a job's states with the time since the start, and a status line while it waits. */
export class Progress {
  #write: (text: string) => void;
  #tty: boolean;
  #now: () => number;
  #intervalMs: number;
  #start: number;
  #status = "";
  #frame = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #drawn = false;

  constructor({ write, tty, now = Date.now, intervalMs = 100 }: ProgressOptions) {
    this.#write = write;
    this.#tty = tty;
    this.#now = now;
    this.#intervalMs = intervalMs;
    this.#start = now();
  }

  /** Prints a line of its own (above the status line on a terminal). */
  line(text: string): void {
    this.#clear();
    this.#write(`${printable(text)}\n`);
    this.#draw();
  }

  /** Records a state change: a line with the elapsed time; `waiting` keeps the status line going. */
  state(name: string, { detail, waiting = false }: { detail?: string; waiting?: boolean } = {}) {
    const elapsed = formatElapsed(this.#now() - this.#start).padStart(7);
    this.#status = waiting ? name : "";
    this.line(`${elapsed}  ${name}${detail ? `: ${detail}` : ""}`);
    if (this.#tty && waiting) this.#timer ??= setInterval(() => this.#tick(), this.#intervalMs);
    if (!waiting) this.#stopTimer();
  }

  /** Stops the status line and clears it; safe to call more than once. */
  stop(): void {
    this.#stopTimer();
    this.#status = "";
    this.#clear();
  }

  #tick(): void {
    this.#frame = (this.#frame + 1) % FRAMES.length;
    this.#clear();
    this.#draw();
  }

  #draw(): void {
    if (!this.#tty || !this.#status) return;
    const elapsed = formatElapsed(this.#now() - this.#start);
    this.#write(`${FRAMES[this.#frame]} ${this.#status} ${elapsed}`);
    this.#drawn = true;
  }

  #clear(): void {
    if (!this.#drawn) return;
    this.#write(CLEAR_LINE);
    this.#drawn = false;
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
