/** The service in memory with the real xAI client against the fake xAI: issue 20's tests share it. */
import {
  readSse,
  startTestService,
  submitJob,
  type TestService,
  waitForStatus,
} from "../support/app.ts";
import { type FakeXai, startFakeXai } from "../support/fake_xai.ts";

/** A service whose provider is the xAI client, talking to a fake xAI. */
export interface XaiFixture {
  service: TestService;
  xai: FakeXai;
  alice: string;
  bob: string;
}

/** Runs `fn` against a fresh service and fake xAI (b64_json, PNG first). */
export async function withXai(fn: (f: XaiFixture) => Promise<void>): Promise<void> {
  const xai = await startFakeXai({ image: "png" });
  const service = await startTestService({
    env: { XAI_API_KEY: "xai-test-key", GROK_API: xai.url, IMAGE_HOSTS: xai.host },
    workerOptions: { backoffBaseMs: 10, backoffMaxMs: 20 },
  });
  try {
    await fn({
      service,
      xai,
      alice: await service.token("alice"),
      bob: await service.token("bob"),
    });
  } finally {
    await service.close();
    await xai.close();
  }
}

/** Submits a job and waits for it to end; returns its id and final document. */
export async function runJob(
  service: TestService,
  token: string,
  body: Record<string, unknown>,
  // deno-lint-ignore no-explicit-any
): Promise<{ id: string; job: any }> {
  const { response, body: answer } = await submitJob(service, token, body);
  if (response.status !== 202) {
    throw new Error(`Cannot submit: ${response.status} ${JSON.stringify(answer)}`);
  }
  const job = await waitForStatus(service, token, answer.id, ["succeeded", "failed", "canceled"]);
  return { id: answer.id, job };
}

/** The job's events as SSE replays them (the job has ended), data parsed. */
// deno-lint-ignore no-explicit-any
export async function eventsOf(service: TestService, token: string, id: string): Promise<any[]> {
  const response = await service.request(`/v1/jobs/${id}/events`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return (await readSse(response)).filter((e) => e.data).map((e) => JSON.parse(e.data));
}

/** A 422 with the contract's error body, or throws. */
export async function assert422(response: Response): Promise<string> {
  const body = await response.json();
  if (response.status !== 422 || body?.error?.code !== "invalid_request") {
    throw new Error(
      `Expected a 422 invalid_request, got ${response.status} ${JSON.stringify(body)}`,
    );
  }
  return body.error.message;
}
