/** Structured logging setup: JSON lines (or readable text in dev), secrets redacted, request ids attached. */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  configure,
  getConsoleSink,
  getTextFormatter,
  jsonLinesFormatter,
  type LogLevel,
} from "@logtape/logtape";
import {
  DEFAULT_REDACT_FIELDS,
  JWT_PATTERN,
  redactByField,
  redactByPattern,
} from "@logtape/redaction";

/** Field names whose values never reach a log line. */
export const REDACTED_FIELDS = [
  ...DEFAULT_REDACT_FIELDS,
  /authorization/i,
  /ticket/i,
  /token/i,
  /api[-_]?key/i,
  /secret/i,
];

/** Query parameters whose values are hidden when a URL is logged. */
const SECRET_PARAMS = /([?&](?:ticket|token|access_token)=)[^&#]*/gi;

/** Hides credentials carried in a URL's query string. */
export function redactUrl(url: string): string {
  return url.replace(SECRET_PARAMS, "$1[REDACTED]");
}

/** Configures LogTape once for the process (only main.ts calls this). */
export async function configureLogging(
  { level, pretty }: { level: LogLevel; pretty: boolean },
): Promise<void> {
  const patterns = [JWT_PATTERN, {
    pattern: /xai-[A-Za-z0-9]{8,}/g,
    replacement: "[KEY REDACTED]",
  }];
  const formatter = pretty
    ? redactByPattern(getTextFormatter(), patterns)
    : redactByPattern(jsonLinesFormatter, patterns);
  await configure({
    contextLocalStorage: new AsyncLocalStorage(),
    sinks: {
      console: redactByField(getConsoleSink({ formatter }), { fieldPatterns: REDACTED_FIELDS }),
    },
    loggers: [
      { category: ["imagejobs"], lowestLevel: level, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
}
