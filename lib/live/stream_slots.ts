/** Caps the SSE and WebSocket connections one owner may hold open in this process. */

/** Counts open streams per owner; `acquire` returns a release function, or null when at the cap. */
export class StreamSlots {
  #max: number;
  #open = new Map<string, number>();

  constructor(max: number) {
    if (max < 0) throw new RangeError("Cannot create stream slots: max must be >= 0");
    this.#max = max;
  }

  /** Slots `owner` holds now. */
  count(owner: string): number {
    return this.#open.get(owner) ?? 0;
  }

  /** Takes a slot for `owner` (no cap when max is 0); the returned function is idempotent. */
  acquire(owner: string): (() => void) | null {
    const count = this.#open.get(owner) ?? 0;
    if (this.#max > 0 && count >= this.#max) return null;
    this.#open.set(owner, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(owner) ?? 1) - 1;
      if (left <= 0) this.#open.delete(owner);
      else this.#open.set(owner, left);
    };
  }
}
