/** The few error classes the service uses, and the contract's error body. */

/** Error codes of the public contract. */
export type ErrorCode =
  | "invalid_request"
  | "unauthorized"
  | "not_found"
  | "conflict"
  | "payload_too_large"
  | "rate_limited"
  | "quota_exceeded"
  | "unavailable"
  | "internal";

/** The contract's error body. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** An error that maps to an HTTP response with the contract's error body. */
export class HttpError extends Error {
  override name = "HttpError";
  readonly status: number;
  readonly code: ErrorCode;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = status;
    this.code = code;
    this.headers = options.headers ?? {};
  }

  /** The JSON body sent to the client. */
  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

/** A failure worth another attempt later (429, 5xx, timeouts, connection errors). */
export class RetryableError extends Error {
  override name = "RetryableError";
  /** Milliseconds the remote side asked us to wait, when it said so. */
  readonly retryAfterMs?: number;

  constructor(message: string, options: { cause?: unknown; retryAfterMs?: number } = {}) {
    super(message, { cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * The provider is busy (429): the request is worth sending again once its `Retry-After` passed, and it
 * never counts as one of a job's attempts.
 */
export class RateLimitedError extends RetryableError {
  override name = "RateLimitedError";
}

/** A failure that another attempt cannot fix (a 4xx from the provider, bad bytes, a bad token). */
export class PermanentError extends Error {
  override name = "PermanentError";
}

/** Raised when the broker (Redis) cannot be reached or answers with an error. */
export class BrokerUnavailableError extends Error {
  override name = "BrokerUnavailableError";
}

/**
 * Redis answers that mean "not now" rather than "wrong": an AOF still loading, a script running too
 * long, a replica or a cluster in flux.
 */
const NOT_NOW_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|NOREPLICAS)\b/;

/**
 * True for failures that the same request may get past later: the store unreachable (transports turn
 * connection failures into BrokerUnavailableError) or a "not now" reply. Anything else (OOM, a script
 * error, a too-large request) is permanent.
 */
export function isTransient(error: unknown): boolean {
  return error instanceof BrokerUnavailableError ||
    (error instanceof Error && NOT_NOW_REPLY.test(error.message));
}

/** Shorthands for the contract's HTTP errors. */
export const httpErrors = {
  invalid: (message: string) => new HttpError(400, "invalid_request", message),
  unauthorized: (message = "Cannot authenticate: a valid bearer token is required") =>
    new HttpError(401, "unauthorized", message),
  notFound: (message = "Cannot find the job: no such job") =>
    new HttpError(404, "not_found", message),
  conflict: (message: string) => new HttpError(409, "conflict", message),
  tooLarge: (message = "Cannot accept the request: the body is too large") =>
    new HttpError(413, "payload_too_large", message),
  rateLimited: (retryAfterSeconds: number, message = "Cannot accept more requests: slow down") =>
    new HttpError(429, "rate_limited", message, {
      headers: { "Retry-After": String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    }),
  unavailable: (retryAfterSeconds = 5, message = "Cannot serve the request: try again shortly") =>
    new HttpError(503, "unavailable", message, {
      headers: { "Retry-After": String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    }),
};
