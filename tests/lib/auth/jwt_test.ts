import assert from "node:assert/strict";
import {
  base64url,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importPKCS8,
  type JWTPayload,
  SignJWT,
} from "jose";
import { type Auth, bearerToken, createAuth } from "../../../lib/auth/jwt.ts";
import { HttpError } from "../../../lib/errors.ts";

const SECRET = "test-secret-that-is-long-enough-for-hs256!";
const encoder = new TextEncoder();

function now(): number {
  return Math.floor(Date.now() / 1000);
}

async function signHs(
  claims: JWTPayload,
  { secret = SECRET, alg = "HS256" }: { secret?: string | Uint8Array; alg?: string } = {},
): Promise<string> {
  const key = typeof secret === "string" ? encoder.encode(secret) : secret;
  return await new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
}

function valid(extra: JWTPayload = {}): JWTPayload {
  return { sub: "alice", iat: now(), exp: now() + 600, ...extra };
}

function segment(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

async function assertUnauthorized(auth: Auth, token: string, fragment: string): Promise<void> {
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

interface JwksServer {
  url: string;
  fetches: () => number;
  setKeys: (keys: object[]) => void;
  stop: () => Promise<void>;
}

function startJwksServer(initial: object[], status = 200): JwksServer {
  let keys = initial;
  let count = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    count++;
    return Response.json({ keys }, { status });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/.well-known/jwks.json`,
    fetches: () => count,
    setKeys: (next) => keys = next,
    stop: () => server.shutdown(),
  };
}

async function rsaPair() {
  return await generateKeyPair("RS256");
}

Deno.test("createAuth with an HMAC secret rejects every token in the attack matrix", async (t) => {
  const auth = await createAuth({ secret: SECRET });

  await t.step("accepts a well-formed token and returns its subject", async () => {
    assert.deepEqual(await auth.verify(await signHs(valid())), { sub: "alice" });
    assert.deepEqual(await auth.verify(await signHs(valid(), { alg: "HS512" })), { sub: "alice" });
  });
  await t.step("rejects alg none", async () => {
    const token = `${segment({ alg: "none", typ: "JWT" })}.${segment(valid())}.`;
    await assertUnauthorized(auth, token, "the token");
  });
  await t.step("rejects a token signed with the wrong key", async () => {
    const token = await signHs(valid(), { secret: "another-secret-of-decent-length-000" });
    await assertUnauthorized(auth, token, "signature is invalid");
  });
  await t.step("rejects an expired token", async () => {
    await assertUnauthorized(auth, await signHs(valid({ exp: now() - 3600 })), "has expired");
  });
  await t.step("accepts a token expired within the clock tolerance", async () => {
    assert.deepEqual(await auth.verify(await signHs(valid({ exp: now() - 5 }))), { sub: "alice" });
  });
  await t.step("rejects a token without exp", async () => {
    await assertUnauthorized(auth, await signHs({ sub: "alice", iat: now() }), "has no expiry");
  });
  await t.step("rejects a token without sub", async () => {
    await assertUnauthorized(auth, await signHs({ exp: now() + 600 }), "has no subject");
  });
  await t.step("rejects an empty or oversized sub", async () => {
    await assertUnauthorized(auth, await signHs(valid({ sub: "" })), "invalid subject");
    await assertUnauthorized(auth, await signHs(valid({ sub: "x".repeat(257) })), "subject");
  });
  await t.step("rejects a token whose nbf is in the future", async () => {
    await assertUnauthorized(auth, await signHs(valid({ nbf: now() + 3600 })), "not valid yet");
  });
  await t.step("rejects a token issued far in the future", async () => {
    const token = await signHs(valid({ iat: now() + 3600, exp: now() + 7200 }));
    await assertUnauthorized(auth, token, "issued in the future");
  });
  await t.step("rejects a tampered payload", async () => {
    const [header, , signature] = (await signHs(valid())).split(".");
    await assertUnauthorized(
      auth,
      `${header}.${segment(valid({ sub: "admin" }))}.${signature}`,
      "signature is invalid",
    );
  });
  await t.step("rejects malformed strings", async () => {
    await assertUnauthorized(auth, "garbage", "malformed");
    await assertUnauthorized(auth, "abc.def", "malformed");
    await assertUnauthorized(auth, "", "missing");
    await assertUnauthorized(auth, "a.b.c.d.e", "malformed");
  });
  await t.step("rejects a token longer than the cap before parsing it", async () => {
    const huge = await signHs(valid({ pad: "x".repeat(9000) }));
    await assertUnauthorized(auth, huge, "too long");
    const small = await createAuth({ secret: SECRET, maxTokenLength: 64 });
    await assertUnauthorized(small, await signHs(valid()), "too long");
  });
  await t.step("rejects an algorithm outside the configured list", async () => {
    const only256 = await createAuth({ secret: SECRET, algorithms: ["HS256"] });
    await assertUnauthorized(only256, await signHs(valid(), { alg: "HS384" }), "not allowed");
  });
  await t.step(
    "never puts the token in the message and keeps the jose error as cause",
    async () => {
      const token = await signHs(valid({ exp: now() - 3600 }));
      const error = await auth.verify(token).catch((e) => e);
      assert.ok(error instanceof HttpError);
      assert.ok(!error.message.includes(token));
      assert.equal((error.cause as Error).name, "JWTExpired");
    },
  );
});

Deno.test("createAuth enforces iss and aud when configured", async (t) => {
  const auth = await createAuth({ secret: SECRET, issuer: "https://idp", audience: "images" });

  await t.step("accepts the right issuer and audience", async () => {
    const token = await signHs(valid({ iss: "https://idp", aud: "images" }));
    assert.deepEqual(await auth.verify(token), { sub: "alice" });
  });
  await t.step("rejects the wrong issuer", async () => {
    const token = await signHs(valid({ iss: "https://evil", aud: "images" }));
    await assertUnauthorized(auth, token, "wrong issuer");
  });
  await t.step("rejects the wrong audience", async () => {
    const token = await signHs(valid({ iss: "https://idp", aud: "other" }));
    await assertUnauthorized(auth, token, "wrong audience");
  });
  await t.step("rejects a token without an issuer", async () => {
    await assertUnauthorized(auth, await signHs(valid({ aud: "images" })), "no issuer");
  });
  await t.step("signs tokens that carry the configured issuer and audience", async () => {
    assert.ok(auth.sign);
    assert.deepEqual(await auth.verify(await auth.sign("bob", 60)), { sub: "bob" });
  });
});

Deno.test("createAuth validates its options", async (t) => {
  const { publicKey } = await rsaPair();
  const pem = await exportSPKI(publicKey);

  await t.step("requires exactly one key source", async () => {
    await assert.rejects(createAuth({}), /exactly one/);
    await assert.rejects(createAuth({ secret: SECRET, publicKey: pem }), /exactly one/);
    await assert.rejects(createAuth({ secret: "" }), /exactly one/);
  });
  await t.step("refuses algorithms from the other family", async () => {
    await assert.rejects(createAuth({ secret: SECRET, algorithms: ["RS256"] }), /RS256 cannot/);
    await assert.rejects(createAuth({ publicKey: pem, algorithms: ["HS256"] }), /HS256 cannot/);
    await assert.rejects(createAuth({ publicKey: pem, algorithms: ["ES256"] }), /ES256 cannot/);
    await assert.rejects(
      createAuth({ jwksUrl: "http://127.0.0.1:1/jwks", algorithms: ["HS512"] }),
      /HS512 cannot/,
    );
  });
  await t.step("checks clockToleranceSec and maxTokenLength ranges", async () => {
    await assert.rejects(createAuth({ secret: SECRET, clockToleranceSec: 61 }), RangeError);
    await assert.rejects(createAuth({ secret: SECRET, clockToleranceSec: -1 }), RangeError);
    await assert.rejects(createAuth({ secret: SECRET, maxTokenLength: 0 }), RangeError);
  });
  await t.step("refuses a PEM that is not an SPKI public key", async () => {
    await assert.rejects(createAuth({ publicKey: "not a key" }), /SPKI/);
  });
  await t.step("offers sign only with a secret", async () => {
    assert.equal((await createAuth({ publicKey: pem })).sign, undefined);
    const auth = await createAuth({ secret: SECRET });
    await assert.rejects(auth.sign!(""), RangeError);
    await assert.rejects(auth.sign!("alice", 0), RangeError);
  });
});

Deno.test("createAuth verifies signatures with a PEM public key", async (t) => {
  await t.step("accepts RS256 and PS256 tokens from an RSA key", async () => {
    const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
    const auth = await createAuth({ publicKey: await exportSPKI(publicKey) });
    const pkcs8 = await exportPKCS8(privateKey);
    for (const alg of ["RS256", "PS256", "RS512"]) {
      const key = await importPKCS8(pkcs8, alg);
      const token = await new SignJWT(valid()).setProtectedHeader({ alg }).sign(key);
      assert.deepEqual(await auth.verify(token), { sub: "alice" });
    }
  });
  await t.step("rejects an HS256 token keyed with the PEM text (RS/HS confusion)", async () => {
    const { publicKey } = await generateKeyPair("RS256");
    const pem = await exportSPKI(publicKey);
    const auth = await createAuth({ publicKey: pem });
    for (const secret of [pem, pem.trim()]) {
      await assertUnauthorized(auth, await signHs(valid(), { secret }), "not allowed");
    }
  });
  await t.step("accepts ES256 and rejects ES384 from a P-256 key", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const auth = await createAuth({ publicKey: await exportSPKI(publicKey) });
    const token = await new SignJWT(valid()).setProtectedHeader({ alg: "ES256" }).sign(privateKey);
    assert.deepEqual(await auth.verify(token), { sub: "alice" });
    const other = await generateKeyPair("ES384");
    const wrong = await new SignJWT(valid()).setProtectedHeader({ alg: "ES384" })
      .sign(other.privateKey);
    await assertUnauthorized(auth, wrong, "not allowed");
  });
  await t.step("infers ES384 and ES512 from P-384 and P-521 keys", async () => {
    for (const alg of ["ES384", "ES512"]) {
      const { publicKey, privateKey } = await generateKeyPair(alg);
      const auth = await createAuth({ publicKey: await exportSPKI(publicKey) });
      const token = await new SignJWT(valid()).setProtectedHeader({ alg }).sign(privateKey);
      assert.deepEqual(await auth.verify(token), { sub: "alice" });
    }
  });
  await t.step("accepts EdDSA from an Ed25519 key given with literal \\n escapes", async () => {
    const { publicKey, privateKey } = await generateKeyPair("EdDSA");
    const escaped = (await exportSPKI(publicKey)).trim().replaceAll("\n", "\\n");
    const auth = await createAuth({ publicKey: escaped });
    const token = await new SignJWT(valid()).setProtectedHeader({ alg: "EdDSA" }).sign(privateKey);
    assert.deepEqual(await auth.verify(token), { sub: "alice" });
    const stranger = await generateKeyPair("EdDSA");
    const forged = await new SignJWT(valid()).setProtectedHeader({ alg: "EdDSA" })
      .sign(stranger.privateKey);
    await assertUnauthorized(auth, forged, "signature is invalid");
  });
});

Deno.test("createAuth verifies tokens against a remote JWKS", async (t) => {
  async function keyPair(kid: string) {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
    const sign = (claims: JWTPayload, headerKid = kid) =>
      new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: headerKid }).sign(privateKey);
    return { jwk, sign };
  }

  await t.step("picks up a rotated key once the cooldown has passed", async () => {
    const first = await keyPair("key-1");
    const second = await keyPair("key-2");
    const server = startJwksServer([first.jwk]);
    const realNow = Date.now;
    try {
      const auth = await createAuth({ jwksUrl: server.url });
      assert.deepEqual(await auth.verify(await first.sign(valid())), { sub: "alice" });
      assert.equal(server.fetches(), 1);

      server.setKeys([second.jwk]);
      await assertUnauthorized(auth, await second.sign(valid()), "unknown key");
      assert.equal(server.fetches(), 1, "no refetch inside the cooldown");

      const later = realNow() + 31_000;
      Date.now = () => later;
      assert.deepEqual(await auth.verify(await second.sign(valid())), { sub: "alice" });
      assert.equal(server.fetches(), 2);
      await assertUnauthorized(auth, await first.sign(valid()), "unknown key");
      assert.equal(server.fetches(), 2);
    } finally {
      Date.now = realNow;
      await server.stop();
    }
  });

  await t.step(
    "forgets cached tokens of a key that left the set once jose refetches it",
    async () => {
      const first = await keyPair("key-1");
      const second = await keyPair("key-2");
      const server = startJwksServer([first.jwk]);
      const realNow = Date.now;
      try {
        const auth = await createAuth({ jwksUrl: server.url });
        const old = await first.sign(valid({ exp: now() + 86_400 }));
        assert.deepEqual(await auth.verify(old), { sub: "alice" });
        assert.deepEqual(await auth.verify(old), { sub: "alice" }, "served from the cache");
        server.setKeys([second.jwk]);
        const later = realNow() + 31_000;
        Date.now = () => later;
        assert.deepEqual(await auth.verify(await second.sign(valid())), { sub: "alice" });
        assert.equal(server.fetches(), 2, "the new key made jose fetch the set again");
        await assertUnauthorized(auth, old, "unknown key");
      } finally {
        Date.now = realNow;
        await server.stop();
      }
    },
  );

  await t.step("fetches at most once per cooldown under a flood of unknown kids", async () => {
    const pair = await keyPair("known");
    const server = startJwksServer([pair.jwk]);
    let injected = 0;
    try {
      const auth = await createAuth({
        jwksUrl: server.url,
        fetch: (input, init) => {
          injected++;
          return fetch(input, init);
        },
      });
      const tokens = await Promise.all(
        Array.from({ length: 50 }, () => pair.sign(valid(), crypto.randomUUID())),
      );
      const results = await Promise.allSettled(tokens.map((token) => auth.verify(token)));
      assert.ok(results.every((result) => result.status === "rejected"));
      for (const token of tokens.slice(0, 5)) await assertUnauthorized(auth, token, "unknown key");
      assert.ok(server.fetches() <= 2, `fetched ${server.fetches()} times`);
      assert.equal(injected, server.fetches(), "the injected fetch is used");
      assert.deepEqual(await auth.verify(await pair.sign(valid())), { sub: "alice" });
      assert.ok(server.fetches() <= 2);
    } finally {
      await server.stop();
    }
  });

  await t.step("answers 401 when the key set cannot be fetched", async () => {
    const pair = await keyPair("k");
    const server = startJwksServer([pair.jwk], 500);
    try {
      const auth = await createAuth({ jwksUrl: server.url });
      await assertUnauthorized(auth, await pair.sign(valid()), "key set is unavailable");
    } finally {
      await server.stop();
    }
  });
});

Deno.test("sign makes HS256 tokens with sub, iat and a one-hour exp", async () => {
  const auth = await createAuth({ secret: SECRET });
  const token = await auth.sign!("carol");
  const [header, payload] = token.split(".").slice(0, 2).map((part) =>
    JSON.parse(new TextDecoder().decode(base64url.decode(part)))
  );
  assert.equal(header.alg, "HS256");
  assert.equal(payload.sub, "carol");
  assert.ok(Math.abs(payload.exp - payload.iat - 3600) <= 1);
  assert.deepEqual(await auth.verify(token), { sub: "carol" });
});

Deno.test("bearerToken parses the Authorization header", async (t) => {
  await t.step("accepts the Bearer scheme in any case, trimmed", () => {
    assert.equal(bearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
    assert.equal(bearerToken("  bearer   abc  "), "abc");
    assert.equal(bearerToken("BEARER x"), "x");
  });
  await t.step("rejects missing, empty and other schemes", () => {
    for (const header of [undefined, null, "", "Bearer", "Bearer   ", "Basic abc", "Bearer a b"]) {
      assert.equal(bearerToken(header), null, String(header));
    }
  });
});
