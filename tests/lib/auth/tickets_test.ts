/** Tests of the job-scoped read tickets: issued short-lived, kept apart from bearer tokens. */
import assert from "node:assert/strict";
import { base64url, SignJWT } from "jose";
import { createAuth } from "../../../lib/auth/jwt.ts";
import { HttpError } from "../../../lib/errors.ts";
import { createTickets, type Tickets } from "../../../lib/auth/tickets.ts";

const SECRET = "shared-secret-used-for-both-tokens-and-tickets";

async function assertUnauthorized(
  tickets: Tickets,
  ticket: string,
  fragment: string,
  jobId?: string,
): Promise<void> {
  await assert.rejects(tickets.verify(ticket, jobId), (error: unknown) => {
    assert.ok(error instanceof HttpError, `expected HttpError, got ${error}`);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthorized");
    assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  });
}

function decodePart(token: string, index: number): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(base64url.decode(token.split(".")[index])));
}

Deno.test("createTickets issues short-lived read tickets for one job", async (t) => {
  const tickets = await createTickets({ secret: SECRET });

  await t.step("round-trips owner and job", async () => {
    const ticket = await tickets.issue("alice", "job-1");
    assert.deepEqual(await tickets.verify(ticket), { owner: "alice", jobId: "job-1" });
    assert.deepEqual(await tickets.verify(ticket, "job-1"), { owner: "alice", jobId: "job-1" });
  });
  await t.step("carries typ, aud, scope and an exp at most 15 minutes away", async () => {
    const ticket = await tickets.issue("alice", "job-1");
    assert.equal(decodePart(ticket, 0).typ, "ticket+jwt");
    assert.equal(decodePart(ticket, 0).alg, "HS256");
    const payload = decodePart(ticket, 1);
    assert.equal(payload.aud, "image-job-ticket");
    assert.equal(payload.scope, "read");
    assert.equal(payload.job, "job-1");
    assert.ok((payload.exp as number) - (payload.iat as number) <= 900);
  });
  await t.step("rejects a ticket checked against another job", async () => {
    const ticket = await tickets.issue("alice", "job-1");
    await assertUnauthorized(tickets, ticket, "another job", "job-2");
  });
  await t.step("rejects an expired ticket", async () => {
    const realNow = Date.now;
    const past = realNow() - 3_600_000;
    let ticket: string;
    try {
      Date.now = () => past;
      ticket = await tickets.issue("alice", "job-1");
    } finally {
      Date.now = realNow;
    }
    await assertUnauthorized(tickets, ticket, "has expired");
  });
  await t.step("rejects a tampered job claim", async () => {
    const [header, payload, signature] = (await tickets.issue("alice", "job-1")).split(".");
    const claims = decodePart(`${header}.${payload}`, 1);
    const forged = base64url.encode(JSON.stringify({ ...claims, job: "job-2" }));
    await assertUnauthorized(tickets, `${header}.${forged}.${signature}`, "is invalid");
  });
  await t.step("rejects garbage and a ticket from another secret", async () => {
    await assertUnauthorized(tickets, "garbage", "is invalid");
    await assertUnauthorized(tickets, "", "is missing");
    const other = await createTickets({ secret: "a-completely-different-secret" });
    await assertUnauthorized(tickets, await other.issue("alice", "job-1"), "is invalid");
  });
});

Deno.test("tickets and bearer tokens never stand in for each other", async (t) => {
  const tickets = await createTickets({ secret: SECRET });
  const auth = await createAuth({ secret: SECRET });

  await t.step("a ticket is not a bearer token with the same secret", async () => {
    const ticket = await tickets.issue("alice", "job-1");
    await assert.rejects(auth.verify(ticket), (error: unknown) => {
      assert.ok(error instanceof HttpError);
      assert.equal(error.status, 401);
      return true;
    });
  });
  await t.step("a bearer token is not a ticket", async () => {
    await assertUnauthorized(tickets, await auth.sign!("alice"), "is invalid");
  });
  await t.step("a ticket-shaped token signed with the raw secret is not a ticket", async () => {
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ job: "job-1", scope: "read" })
      .setProtectedHeader({ alg: "HS256", typ: "ticket+jwt" })
      .setSubject("alice")
      .setAudience("image-job-ticket")
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(new TextEncoder().encode(SECRET));
    await assertUnauthorized(tickets, forged, "is invalid");
  });
});

Deno.test("createTickets validates its options", async (t) => {
  await t.step("rejects a ttl above 900 seconds or below 1", async () => {
    await assert.rejects(createTickets({ secret: SECRET, ttlSec: 901 }), RangeError);
    await assert.rejects(createTickets({ secret: SECRET, ttlSec: 0 }), RangeError);
  });
  await t.step("rejects an empty secret", async () => {
    await assert.rejects(createTickets({ secret: "" }), RangeError);
  });
  await t.step("honours a shorter ttl", async () => {
    const tickets = await createTickets({ secret: SECRET, ttlSec: 60 });
    const payload = decodePart(await tickets.issue("alice", "job-1"), 1);
    assert.equal((payload.exp as number) - (payload.iat as number), 60);
  });
});
