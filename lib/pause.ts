/** An interruptible wait shared by the polling loops (worker claims, relay feed). */

/** Waits `ms`, or less when `signal` aborts first; never rejects. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    if (signal.aborted) return done();
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A pause that something else can end early (a submit, a new subscriber), besides the stop signal. */
export class Wakeable {
  #wake: AbortController | null = null;
  /** A wake() that came while nothing slept: the next sleep ends at once, so it is not lost. */
  #pending = false;

  /** Waits `ms`, ending early on `stop` or on `wake()` (also one that came since the last sleep). */
  async sleep(ms: number, stop: AbortSignal): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return;
    }
    const wake = new AbortController();
    this.#wake = wake;
    try {
      await pause(ms, AbortSignal.any([stop, wake.signal]));
    } finally {
      if (this.#wake === wake) this.#wake = null;
    }
  }

  /** Ends the current sleep, or else the next one. */
  wake(): void {
    if (this.#wake) this.#wake.abort();
    else this.#pending = true;
  }
}
