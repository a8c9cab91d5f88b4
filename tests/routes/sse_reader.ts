/** Reads a Server-Sent Events response one event at a time (for streams that stay open). */

/** One SSE block: its fields, and the comment lines seen since the previous event. */
export interface SseBlock {
  id?: string;
  event?: string;
  data: string;
  comments: string[];
}

/** Parses events off an open stream as they come; `next()` fails instead of hanging. */
export class SseReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #comments: string[] = [];
  #ended = false;
  /** A read that a timeout left waiting: the next call takes its result. */
  #pending: Promise<ReadableStreamReadResult<string>> | null = null;

  constructor(response: Response) {
    this.#reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** True once the server ended the stream. */
  get ended(): boolean {
    return this.#ended;
  }

  /** The next event; null when the stream ends first; throws after `ms`. */
  async next(ms = 10_000): Promise<SseBlock | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const block = this.#take();
      if (block) return block;
      if (this.#ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Cannot read an event: none within ${ms} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) =>
        timer = setTimeout(() => resolve("timeout"), left)
      );
      this.#pending ??= this.#reader.read();
      const read = await Promise.race([this.#pending, timeout]);
      clearTimeout(timer);
      if (read === "timeout") continue;
      this.#pending = null;
      if (read.done) this.#ended = true;
      else this.#buffer += read.value;
    }
  }

  /** The next `count` events (failing when the stream ends or stalls first). */
  async take(count: number, ms = 10_000): Promise<SseBlock[]> {
    const blocks: SseBlock[] = [];
    while (blocks.length < count) {
      const block = await this.next(ms);
      if (!block) {
        throw new Error(`Cannot read ${count} events: the stream ended after ${blocks.length}`);
      }
      blocks.push(block);
    }
    return blocks;
  }

  /** Comment lines seen so far that no event has taken. */
  get comments(): string[] {
    return this.#comments;
  }

  /** Stops reading (the server sees the client leave). */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }

  #take(): SseBlock | null {
    for (;;) {
      const end = this.#buffer.indexOf("\n\n");
      if (end < 0) return null;
      const text = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      const block: SseBlock = { data: "", comments: [] };
      for (const line of text.split("\n")) {
        if (line.startsWith(":")) this.#comments.push(line.slice(1).trim());
        else {
          const at = line.indexOf(":");
          const field = at < 0 ? line : line.slice(0, at);
          const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
          if (field === "id") block.id = value;
          else if (field === "event") block.event = value;
          else if (field === "data") block.data += value;
        }
      }
      if (block.data === "" && block.event === undefined) continue;
      block.comments = this.#comments;
      this.#comments = [];
      return block;
    }
  }
}
