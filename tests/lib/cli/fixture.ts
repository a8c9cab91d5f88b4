/** The service the CLI tests run against: `main.ts` as a subprocess with a fake xAI, and a temp cwd. */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { type ServiceProcess, startService } from "../../support/service.ts";
import { type FakeXai, type FakeXaiOptions, startFakeXai } from "../../support/fake_xai.ts";

/** The HMAC secret of the service started with a configured key. */
export const SECRET = "cli-test-secret-0123456789-abcdefghij";

/** An HS256 token for `sub` signed with SECRET. */
export function signToken(sub: string): Promise<string> {
  return new SignJWT().setProtectedHeader({ alg: "HS256" }).setSubject(sub).setIssuedAt()
    .setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
}

/** The states the CLI printed, in order. */
export function states(stdout: string): string[] {
  return [...stdout.matchAll(/^\s+\d+\.\d+s {2}(\w+)/gm)].map((m) => m[1]);
}

/** The job id the CLI printed. */
export function jobIdOf(stdout: string): string {
  const id = stdout.match(/Submitted job (\S+)/)?.[1];
  assert.ok(id, `no job id in:\n${stdout}`);
  return id;
}

/** A running service, its fake xAI and a temp directory to run the CLI in. */
export interface Fixture {
  service: ServiceProcess;
  xai: FakeXai;
  cwd: string;
  /** The bytes of the fake's image. */
  fakeImage: Uint8Array;
  /** A dev token for the owner the CLI's own dev tokens have (DEV_MODE only). */
  devToken(): Promise<string>;
  /** The job's status as GET /v1/jobs/:id shows it to `token`. */
  jobStatus(id: string, token: string): Promise<string>;
  close(): Promise<void>;
}

/** Starts the service (memory broker) on the fake xAI with `env` on top. */
export async function startFixture(
  env: Record<string, string>,
  xaiOptions: FakeXaiOptions = {},
): Promise<Fixture> {
  const xai = await startFakeXai(xaiOptions);
  const service = await startService({
    GROK_API: xai.url,
    XAI_API_KEY: "test",
    IMAGE_HOSTS: xai.host,
    RATE_LIMIT_PER_MINUTE: "1000",
    ...env,
  }).catch(async (error) => {
    await xai.close();
    throw error;
  });
  const cwd = await Deno.makeTempDir({ prefix: "cli_submit_" });
  const fakeImage = await (await fetch(`http://${xai.host}/images/a.jpg`)).bytes();
  return {
    service,
    xai,
    cwd,
    fakeImage,
    async devToken() {
      const res = await fetch(`${service.url}/v1/dev/token`, { method: "POST", body: "{}" });
      assert.equal(res.status, 200);
      return (await res.json()).token;
    },
    async jobStatus(id, token) {
      const res = await fetch(`${service.url}/v1/jobs/${id}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      return (await res.json()).status;
    },
    async close() {
      await service.stop();
      await xai.close();
      await Deno.remove(cwd, { recursive: true });
    },
  };
}
