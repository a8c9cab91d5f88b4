/** Token verification with keys from elsewhere: a PEM public key of each family, and a remote JWKS. */
import assert from "node:assert/strict";
import {
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importPKCS8,
  type JWTPayload,
  SignJWT,
} from "jose";
import { createAuth } from "../../../lib/auth/jwt.ts";
import { assertUnauthorized, now, signHs, valid } from "./token_helpers.ts";

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
