/** Short-lived, read-only, single-job tickets for EventSource and WebSocket URLs. */
import { errors, jwtVerify, SignJWT } from "jose";
import { z } from "zod";
import { HttpError } from "./errors.ts";

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
  /** Returns the ticket's owner and job, or throws HttpError 401 (also when `jobId` differs). */
  verify(ticket: string, jobId?: string): Promise<TicketClaims>;
}

const TYP = "ticket+jwt";
const AUDIENCE = "image-job-ticket";
const HKDF_INFO = "image-jobs/job-ticket/v1";
const MAX_TTL_SEC = 900;
const CLOCK_TOLERANCE_SEC = 5;
const MAX_TICKET_LENGTH = 2048;

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

  async function issue(owner: string, jobId: string): Promise<string> {
    if (!claimsSchema.shape.sub.safeParse(owner).success) {
      throw new RangeError("Cannot issue a ticket: owner must be 1 to 256 characters");
    }
    if (!claimsSchema.shape.job.safeParse(jobId).success) {
      throw new RangeError("Cannot issue a ticket: jobId must be 1 to 256 characters");
    }
    const now = Math.floor(Date.now() / 1000);
    return await new SignJWT({ job: jobId, scope: "read" })
      .setProtectedHeader({ alg: "HS256", typ: TYP })
      .setSubject(owner)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSec)
      .sign(key);
  }

  async function verify(ticket: string, jobId?: string): Promise<TicketClaims> {
    if (typeof ticket !== "string" || ticket.length === 0) throw unauthorized("is missing");
    if (ticket.length > MAX_TICKET_LENGTH) throw unauthorized("is too long");
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
    if (jobId !== undefined && claims.data.job !== jobId) {
      throw unauthorized("is for another job");
    }
    return { owner: claims.data.sub, jobId: claims.data.job };
  }

  return { issue, verify };
}

async function deriveTicketKey(secret: string): Promise<CryptoKey> {
  const encoder = new TextEncoder();
  const base = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    "HKDF",
    false,
    ["deriveKey"],
  );
  return await crypto.subtle.deriveKey(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode(AUDIENCE),
      info: encoder.encode(HKDF_INFO),
    },
    base,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign", "verify"],
  );
}

function unauthorized(state: string, cause?: unknown): HttpError {
  return new HttpError(401, "unauthorized", `Cannot authenticate: the ticket ${state}`, {
    cause,
  });
}
