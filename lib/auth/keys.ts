/** Where bearer-token keys come from: the algorithms a key allows, a PEM public key, or a remote JWKS. */
import { createRemoteJWKSet, customFetch, errors, importSPKI, type JWTVerifyGetKey } from "jose";

/** Algorithms accepted with an HMAC secret. */
export const HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"];
const KEY_FAMILIES: Record<string, string[]> = {
  RSA: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
  "P-256": ["ES256"],
  "P-384": ["ES384"],
  "P-521": ["ES512"],
  Ed25519: ["EdDSA", "Ed25519"],
};
/** Algorithms accepted from a JWKS: every asymmetric family. */
export const ASYMMETRIC_ALGORITHMS = Object.values(KEY_FAMILIES).flat();

/** Marks a JWKS that could not be fetched or parsed, as opposed to a bad token. */
export class KeySetUnavailable extends Error {
  override name = "KeySetUnavailable";
}

/** The requested algorithms, checked against those the key allows (all of them when none is requested). */
export function pickAlgorithms(
  requested: string[] | undefined,
  allowed: string[],
  kind: string,
): string[] {
  if (requested === undefined) return [...allowed];
  if (requested.length === 0) {
    throw new Error("Cannot create the authenticator: the algorithm list is empty");
  }
  const foreign = requested.filter((alg) => !allowed.includes(alg));
  if (foreign.length > 0) {
    throw new Error(
      `Cannot create the authenticator: ${foreign.join(", ")} cannot be used with ${kind}` +
        ` (allowed: ${allowed.join(", ")})`,
    );
  }
  return [...new Set(requested)];
}

/** Imports an SPKI PEM public key, inferring its family, with one key per allowed algorithm. */
export async function importPublicKey(
  text: string,
  requested: string[] | undefined,
): Promise<{ key: JWTVerifyGetKey; algorithms: string[] }> {
  const pem = text.replaceAll("\\r", "").replaceAll("\\n", "\n").replaceAll("\r", "").trim();
  if (!pem.startsWith("-----BEGIN PUBLIC KEY-----")) {
    throw new Error(
      'Cannot create the authenticator: the public key must be an SPKI PEM ("BEGIN PUBLIC KEY")',
    );
  }
  let family: string | undefined;
  for (const [name, [probe]] of Object.entries(KEY_FAMILIES)) {
    try {
      await importSPKI(pem, probe);
      family = name;
      break;
    } catch {
      // Not this key type; try the next one.
    }
  }
  if (family === undefined) {
    throw new Error(
      "Cannot create the authenticator: the public key is not an RSA, P-256, P-384, P-521 or Ed25519 key",
    );
  }
  const algorithms = pickAlgorithms(requested, KEY_FAMILIES[family], `a ${family} public key`);
  const keys = new Map<string, Awaited<ReturnType<typeof importSPKI>>>();
  for (const alg of algorithms) keys.set(alg, await importSPKI(pem, alg));
  const key: JWTVerifyGetKey = (header) => keys.get(header.alg)!;
  return { key, algorithms };
}

/**
 * The JWKS getter; after each use it compares the key set jose holds with the one it saw last, and on a
 * change calls `onChange` with the key ids that stayed the same (a new key under an old id counts as gone).
 */
export function remoteKeySet(
  url: string,
  fetchImpl: typeof fetch | undefined,
  onChange: (kept: Set<string>) => void,
): JWTVerifyGetKey {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new Error("Cannot create the authenticator: jwksUrl is not a valid URL", { cause });
  }
  const keySet = createRemoteJWKSet(parsed, {
    cooldownDuration: 30_000,
    cacheMaxAge: 600_000,
    timeoutDuration: 5000,
    ...(fetchImpl ? { [customFetch]: fetchImpl } : {}),
  });
  let seen: string | null = null;
  let known = new Map<string, string>();
  const watch = () => {
    const keys = keySet.jwks()?.keys ?? [];
    const text = JSON.stringify(keys);
    if (text === seen) return;
    const next = new Map(keys.map((jwk) => [String(jwk.kid ?? ""), JSON.stringify(jwk)]));
    const first = seen === null;
    const before = known;
    seen = text;
    known = next;
    if (first) return;
    const kept = new Set<string>();
    for (const [kid, jwk] of next) if (kid !== "" && before.get(kid) === jwk) kept.add(kid);
    onChange(kept);
  };
  return async function getKey(header, token) {
    try {
      return await keySet(header, token);
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey) throw error;
      if (error instanceof errors.JWKSMultipleMatchingKeys) throw error;
      if (error instanceof errors.JOSENotSupported) throw error;
      throw new KeySetUnavailable("Cannot fetch the key set", { cause: error });
    } finally {
      watch();
    }
  };
}
