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

  /** Waits `ms`, ending early on `stop` or on `wake()`. */
  async sleep(ms: number, stop: AbortSignal): Promise<void> {
    const wake = new AbortController();
    this.#wake = wake;
    try {
      await pause(ms, AbortSignal.any([stop, wake.signal]));
    } finally {
      if (this.#wake === wake) this.#wake = null;
    }
  }

  /** Ends the current sleep, if any. */
  wake(): void {
    this.#wake?.abort();
  }
}
