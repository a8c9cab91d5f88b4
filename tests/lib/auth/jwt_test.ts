/** Token verification with an HMAC secret, its options, the dev token signer and the Bearer header. */
import assert from "node:assert/strict";
import { base64url, exportSPKI, generateKeyPair } from "jose";
import { bearerToken, createAuth } from "../../../lib/auth/jwt.ts";
import { HttpError } from "../../../lib/errors.ts";
import { assertUnauthorized, now, SECRET, signHs, valid } from "./token_helpers.ts";

function segment(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
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
