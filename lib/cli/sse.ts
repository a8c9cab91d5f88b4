/** A small Server-Sent Events reader for fetch bodies, with an idle deadline. */
import { CliError, EXIT } from "./errors.ts";

/** One dispatched event: its type, its data lines joined, and the last event id seen so far. */
export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** Reads the next chunk, failing when nothing (not even a keepalive comment) comes within `ms`. */
async function readWithin<T>(
  reader: ReadableStreamDefaultReader<T>,
  ms: number,
): Promise<ReadableStreamReadResult<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CliError(EXIT.unreachable, `Cannot read the events: silent for ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([reader.read(), idle]);
  } finally {
    clearTimeout(timer);
  }
}

/** Parses the SSE stream `body` (WHATWG rules: data lines joined, `id` sticky, comments skipped). */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  { idleMs = 45_000 }: { idleMs?: number } = {},
): AsyncGenerator<SseEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  try {
    while (true) {
      const { value, done } = await readWithin(reader, idleMs);
      if (done) return;
      buffer += value;
      while (true) {
        const end = buffer.search(/\r\n|\r|\n/);
        // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
        if (end < 0 || (end === buffer.length - 1 && buffer[end] === "\r")) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", data: data.join("\n"), id };
          data = [];
          event = "";
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") event = text;
        else if (field === "id" && !text.includes("\0")) id = text;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
