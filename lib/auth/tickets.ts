/** Short-lived, read-only, single-job tickets for EventSource and WebSocket URLs. */
import { createHash, type Hash } from "node:crypto";
import { errors, jwtVerify } from "jose";
import { z } from "zod";
import { HttpError } from "../errors.ts";
import { VerifiedCache } from "./verified_cache.ts";

/** Options for createTickets. */
export interface TicketOptions {
  /** Secret the ticket key is derived from (it may equal JWT_SECRET). */
  secret: string;
  /** Ticket lifetime in seconds (1 to 900, default 900). */
  ttlSec?: number;
}

/** What a valid ticket grants: read access to one job of one owner. */
export interface TicketClaims {
  owner: string;
  jobId: string;
}

/** Issues and verifies job tickets. */
export interface Tickets {
  /** Signs a ticket that lets `owner` read job `jobId`. */
  issue(owner: string, jobId: string): Promise<string>;
  /**
   * A ticket for `owner` and `jobId` with at least 14 of its 15 minutes left, made at most once a
   * minute per job (so that every subscriber of a job shares one, and one copy of its links); for
   * the image links of notifications, which are stored without one.
   */
  current(owner: string, jobId: string): string;
  /** Returns the ticket's owner and job, or throws HttpError 401 (also when `jobId` differs). */
  verify(ticket: string, jobId?: string): Promise<TicketClaims>;
}

const TYP = "ticket+jwt";
const AUDIENCE = "image-job-ticket";
const HKDF_INFO = "image-jobs/job-ticket/v1";
const MAX_TTL_SEC = 900;
const CLOCK_TOLERANCE_SEC = 5;
const MAX_TICKET_LENGTH = 2048;
/** Link tickets kept for reuse (one per job with subscribers in the last minute). */
const LINK_TICKETS = 10_000;

const claimsSchema = z.object({
  sub: z.string().min(1).max(256),
  job: z.string().min(1).max(256),
  scope: z.literal("read"),
  aud: z.literal(AUDIENCE),
  exp: z.number(),
});

/** Builds the ticket issuer/verifier; throws RangeError on a bad ttl or an empty secret. */
export async function createTickets(options: TicketOptions): Promise<Tickets> {
  const { secret, ttlSec = MAX_TTL_SEC } = options;
  if (typeof secret !== "string" || secret.length === 0) {
    throw new RangeError("Cannot create tickets: the secret is empty");
  }
  if (!Number.isInteger(ttlSec) || ttlSec < 1 || ttlSec > MAX_TTL_SEC) {
    throw new RangeError(
      `Cannot create tickets: ttlSec must be an integer from 1 to ${MAX_TTL_SEC}`,
    );
  }
  const key = await deriveTicketKey(secret);
  const sign = hmacSha256(key);
  const cache = new VerifiedCache<TicketClaims>();

  /** Signs synchronously with node:crypto (WebCrypto is about 10x slower): one ticket per submit. */
  function issueNow(owner: string, jobId: string): string {
    if (!isClaimText(owner)) {
      throw new RangeError("Cannot issue a ticket: owner must be 1 to 256 characters");
    }
    if (!isClaimText(jobId)) {
      throw new RangeError("Cannot issue a ticket: jobId must be 1 to 256 characters");
    }
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      job: jobId,
      scope: "read",
      sub: owner,
      aud: AUDIENCE,
      iat: now,
      exp: now + ttlSec,
    };
    const body = `${HEADER}.${encoder.encode(JSON.stringify(claims)).toBase64(B64URL)}`;
    return `${body}.${sign(body)}`;
  }

  function issue(owner: string, jobId: string): Promise<string> {
    return Promise.resolve(issueNow(owner, jobId));
  }

  async function verify(ticket: string, jobId?: string): Promise<TicketClaims> {
    if (typeof ticket !== "string" || ticket.length === 0) throw unauthorized("is missing");
    if (ticket.length > MAX_TICKET_LENGTH) throw unauthorized("is too long");
    const known = cache.get(ticket);
    if (known) {
      if (jobId !== undefined && known.jobId !== jobId) throw unauthorized("is for another job");
      return known;
    }
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(ticket, key, {
        algorithms: ["HS256"],
        typ: TYP,
        audience: AUDIENCE,
        clockTolerance: CLOCK_TOLERANCE_SEC,
        requiredClaims: ["exp", "sub", "job", "scope"],
      }));
    } catch (cause) {
      throw unauthorized(cause instanceof errors.JWTExpired ? "has expired" : "is invalid", cause);
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw unauthorized("is invalid", claims.error);
    const now = Math.floor(Date.now() / 1000);
    if (claims.data.exp > now + MAX_TTL_SEC + CLOCK_TOLERANCE_SEC) {
      throw unauthorized("is invalid");
    }
    const verified = { owner: claims.data.sub, jobId: claims.data.job };
    cache.set(ticket, verified, claims.data.exp * 1000);
    if (jobId !== undefined && claims.data.job !== jobId) {
      throw unauthorized("is for another job");
    }
    return verified;
  }

  /** Tickets made for links in the last minute, by owner and job (at most LINK_TICKETS kept). */
  const recent = new Map<string, { ticket: string; at: number }>();
  function current(owner: string, jobId: string): string {
    const key = `${owner}\n${jobId}`;
    const now = Date.now();
    const found = recent.get(key);
    if (found && now - found.at < 60_000) return found.ticket;
    const ticket = issueNow(owner, jobId);
    recent.delete(key);
    recent.set(key, { ticket, at: now });
    if (recent.size > LINK_TICKETS) recent.delete(recent.keys().next().value!);
    return ticket;
  }

  return { issue, verify, current };
}

const encoder = new TextEncoder();
const B64URL = { alphabet: "base64url", omitPadding: true } as const;
const HEADER = encoder.encode(JSON.stringify({ alg: "HS256", typ: TYP })).toBase64(B64URL);

/** Whether a value fits the `sub` and `job` claims: a string of 1 to 256 characters. */
function isClaimText(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= 256;
}

/**
 * HMAC-SHA-256 (RFC 2104) as base64url, for a key of at most 64 bytes: the hashes of the inner and outer
 * padded keys are computed once and copied per message, half the work of a createHmac per ticket.
 */
function hmacSha256(key: Uint8Array): (message: string) => string {
  if (key.length > 64) throw new RangeError("Cannot sign tickets: the key is over 64 bytes");
  const padded = (fill: number) => {
    const block = new Uint8Array(64).fill(fill);
    for (let i = 0; i < key.length; i++) block[i] = key[i] ^ fill;
    return createHash("sha256").update(block);
  };
  const inner: Hash = padded(0x36);
  const outer: Hash = padded(0x5c);
  return (message) =>
    outer.copy().update(inner.copy().update(message).digest()).digest("base64url");
}

/** Derives the 256-bit ticket key from the shared secret with HKDF, under a label of its own. */
async function deriveTicketKey(secret: string): Promise<Uint8Array> {
  const base = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode(AUDIENCE),
      info: encoder.encode(HKDF_INFO),
    },
    base,
    256,
  );
  return new Uint8Array(bits);
}

function unauthorized(state: string, cause?: unknown): HttpError {
  return new HttpError(401, "unauthorized", `Cannot authenticate: the ticket ${state}`, {
    cause,
  });
}
