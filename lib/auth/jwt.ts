/** Verifies bearer tokens (HMAC secret, PEM public key or remote JWKS) and signs dev tokens. */
import {
  errors,
  type JWTHeaderParameters,
  jwtVerify,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  SignJWT,
} from "jose";
import { z } from "zod";
import { HttpError } from "../errors.ts";
import {
  ASYMMETRIC_ALGORITHMS,
  HMAC_ALGORITHMS,
  importPublicKey,
  KeySetUnavailable,
  pickAlgorithms,
  remoteKeySet,
} from "./keys.ts";
import { VerifiedCache } from "./verified_cache.ts";

/** How bearer tokens are verified; exactly one of secret, publicKey and jwksUrl is set. */
export interface AuthOptions {
  /** HMAC secret (HS256/HS384/HS512). */
  secret?: string;
  /** SPKI PEM public key ("BEGIN PUBLIC KEY"); literal "\n" escapes are accepted. */
  publicKey?: string;
  /** URL of a JSON Web Key Set. */
  jwksUrl?: string;
  /** Allowed algorithms; must belong to the key's family. */
  algorithms?: string[];
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud`, when set. */
  audience?: string;
  /** Clock skew allowed for exp, nbf and iat, in seconds (0 to 60, default 30). */
  clockToleranceSec?: number;
  /** Longest token accepted, in characters (default 8192). */
  maxTokenLength?: number;
  /** Fetch used for the JWKS (tests). */
  fetch?: typeof fetch;
}

/** The authenticated caller. */
export interface Principal {
  sub: string;
}

/** Verifies bearer tokens, and signs them when configured with a secret. */
export interface Auth {
  /** Resolves the token's principal or throws HttpError 401. */
  verify(token: string): Promise<Principal>;
  /** Signs a token for `sub` (HS secret only; used by the dev token route). */
  sign?(sub: string, ttlSec?: number): Promise<string>;
}

const claimsSchema = z.object({ sub: z.string().min(1).max(256), iat: z.number().optional() });

/** Builds the verifier; throws Error on a bad key setup and RangeError on bad numbers. */
export async function createAuth(options: AuthOptions): Promise<Auth> {
  const {
    secret,
    publicKey,
    jwksUrl,
    issuer,
    audience,
    clockToleranceSec = 30,
    maxTokenLength = 8192,
  } = options;
  if (!Number.isFinite(clockToleranceSec) || clockToleranceSec < 0 || clockToleranceSec > 60) {
    throw new RangeError("Cannot create the authenticator: clockToleranceSec must be 0 to 60");
  }
  if (!Number.isInteger(maxTokenLength) || maxTokenLength < 16) {
    throw new RangeError("Cannot create the authenticator: maxTokenLength must be at least 16");
  }
  const sources = [secret, publicKey, jwksUrl].filter((value) => value !== undefined);
  if (sources.length !== 1 || sources[0] === "") {
    throw new Error(
      "Cannot create the authenticator: set exactly one of secret, publicKey and jwksUrl",
    );
  }

  // Verified tokens skip the signature check for a few minutes at most (see VerifiedCache).
  const verified = new VerifiedCache<Principal>();
  let key: JWTVerifyGetKey;
  let algorithms: string[];
  let secretBytes: Uint8Array | undefined;
  if (secret !== undefined) {
    algorithms = pickAlgorithms(options.algorithms, HMAC_ALGORITHMS, "an HMAC secret");
    const bytes = secretBytes = new TextEncoder().encode(secret);
    key = () => bytes;
  } else if (publicKey !== undefined) {
    ({ key, algorithms } = await importPublicKey(publicKey, options.algorithms));
  } else {
    algorithms = pickAlgorithms(options.algorithms, ASYMMETRIC_ALGORITHMS, "a JWKS");
    // When the key set changes, tokens verified with a key that left it (or changed) stop working.
    key = remoteKeySet(
      jwksUrl!,
      options.fetch,
      (kept) => verified.retainTags((kid) => kept.has(kid)),
    );
  }

  const verifyOptions: JWTVerifyOptions = {
    algorithms,
    issuer,
    audience,
    clockTolerance: clockToleranceSec,
    requiredClaims: ["exp", "sub"],
  };

  async function verify(token: string): Promise<Principal> {
    if (typeof token !== "string" || token.length === 0) throw unauthorized("the token is missing");
    if (token.length > maxTokenLength) throw unauthorized("the token is too long");
    const known = verified.get(token);
    if (known) return known;
    let payload: unknown;
    let header: JWTHeaderParameters;
    try {
      ({ payload, protectedHeader: header } = await jwtVerify(token, key, verifyOptions));
    } catch (cause) {
      throw unauthorized(describe(cause), cause);
    }
    if (typeof header.typ === "string" && header.typ.toLowerCase().includes("ticket")) {
      throw unauthorized("the token is invalid");
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw unauthorized("the token has an invalid subject", claims.error);
    const now = Math.floor(Date.now() / 1000);
    if (claims.data.iat !== undefined && claims.data.iat > now + clockToleranceSec) {
      throw unauthorized("the token was issued in the future");
    }
    const principal = { sub: claims.data.sub };
    // Cached until exp (required, so present) or a few minutes, whichever is sooner; with a JWKS,
    // tagged with the key id so that a key leaving the set takes its tokens with it.
    const exp = (payload as { exp?: number }).exp;
    const tag = jwksUrl !== undefined ? header.kid ?? "" : undefined;
    if (typeof exp === "number") verified.set(token, principal, exp * 1000, tag);
    return principal;
  }

  if (secretBytes === undefined) return { verify };
  const signingKey = secretBytes;
  const signAlg = algorithms.includes("HS256") ? "HS256" : algorithms[0];

  async function sign(sub: string, ttlSec = 3600): Promise<string> {
    if (!claimsSchema.shape.sub.safeParse(sub).success) {
      throw new RangeError("Cannot sign a token: sub must be 1 to 256 characters");
    }
    if (!Number.isInteger(ttlSec) || ttlSec < 1 || ttlSec > 86_400) {
      throw new RangeError("Cannot sign a token: ttlSec must be an integer from 1 to 86400");
    }
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: signAlg, typ: "JWT" })
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec);
    if (issuer !== undefined) jwt.setIssuer(issuer);
    if (audience !== undefined) jwt.setAudience(audience);
    return await jwt.sign(signingKey);
  }

  return { verify, sign };
}

/** Extracts the token from an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined | null): string | null {
  if (typeof header !== "string") return null;
  const match = /^Bearer[ \t]+(\S+)$/i.exec(header.trim());
  return match ? match[1] : null;
}

function describe(error: unknown): string {
  if (error instanceof errors.JWTExpired) return "the token has expired";
  if (error instanceof errors.JWTClaimValidationFailed) {
    return CLAIM_STATES[`${error.claim}:${error.reason}`] ?? CLAIM_STATES[error.claim] ??
      "the token is invalid";
  }
  if (error instanceof KeySetUnavailable) return "the key set is unavailable";
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return "the token uses an algorithm that is not allowed";
  }
  if (error instanceof errors.JWKSNoMatchingKey) return "the token was signed by an unknown key";
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return "the token signature is invalid";
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return "the token is malformed";
  }
  return "the token is invalid";
}

const CLAIM_STATES: Record<string, string> = {
  "exp:missing": "the token has no expiry",
  "sub:missing": "the token has no subject",
  "iss:missing": "the token has no issuer",
  "aud:missing": "the token has no audience",
  exp: "the token has an invalid expiry",
  nbf: "the token is not valid yet",
  iat: "the token has an invalid issue time",
  iss: "the token has the wrong issuer",
  aud: "the token has the wrong audience",
};

function unauthorized(state: string, cause?: unknown): HttpError {
  return new HttpError(401, "unauthorized", `Cannot authenticate: ${state}`, { cause });
}
