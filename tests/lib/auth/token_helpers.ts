/** Helpers of the token tests: an HMAC secret, token signers and a 401 assertion. */
import assert from "node:assert/strict";
import { type JWTPayload, SignJWT } from "jose";
import type { Auth } from "../../../lib/auth/jwt.ts";
import { HttpError } from "../../../lib/errors.ts";

/** The HMAC secret the token tests verify with. */
export const SECRET = "test-secret-that-is-long-enough-for-hs256!";
const encoder = new TextEncoder();

/** The current time in epoch seconds. */
export function now(): number {
  return Math.floor(Date.now() / 1000);
}

/** Signs the claims with an HMAC key (SECRET and HS256 unless told otherwise). */
export async function signHs(
  claims: JWTPayload,
  { secret = SECRET, alg = "HS256" }: { secret?: string | Uint8Array; alg?: string } = {},
): Promise<string> {
  const key = typeof secret === "string" ? encoder.encode(secret) : secret;
  return await new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
}

/** Claims of a valid token for alice, ten minutes long, with `extra` merged in. */
export function valid(extra: JWTPayload = {}): JWTPayload {
  return { sub: "alice", iat: now(), exp: now() + 600, ...extra };
}

/** Asserts that verifying the token fails with 401, a "Cannot authenticate" message holding `fragment`. */
export async function assertUnauthorized(
  auth: Auth,
  token: string,
  fragment: string,
): Promise<void> {
  await assert.rejects(auth.verify(token), (error: unknown) => {
    assert.ok(error instanceof HttpError, `expected HttpError, got ${error}`);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthorized");
    assert.match(error.message, /^Cannot authenticate: /);
    assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    if (token.length > 8) assert.ok(!error.message.includes(token));
    return true;
  });
}
