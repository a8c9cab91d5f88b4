/** Request schemas of the HTTP API, validated at the boundary and reused by the OpenAPI document. */
import { z } from "zod";
import { JOB_ID } from "../lib/queue/types.ts";

const jobId = z.string().regex(
  JOB_ID,
  "must be 1 to 128 of A-Z a-z 0-9 _ . : -",
);

/** Body of `POST /v1/images`: the v1 fields, or the seed's `{Token, Prompt, Id}`. */
export const submitBody = z.object({
  prompt: z.string().optional(),
  Prompt: z.string().optional(),
  id: jobId.optional(),
  Id: jobId.optional(),
  Token: z.string().max(8192).optional(),
  model: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be a model name").optional(),
  aspect_ratio: z.string().regex(
    /^(auto|\d{1,2}(\.\d{1,2})?:\d{1,2}(\.\d{1,2})?)$/,
    "must look like 16:9, 19.5:9 or auto",
  ).optional(),
}).transform((body, ctx) => {
  const prompt = (body.prompt ?? body.Prompt ?? "").trim();
  if (prompt.length < 1 || prompt.length > 4000) {
    ctx.addIssue({ code: "custom", path: ["prompt"], message: "must be 1 to 4000 characters" });
    return z.NEVER;
  }
  return {
    prompt,
    id: body.id ?? body.Id,
    token: body.Token,
    model: body.model,
    aspectRatio: body.aspect_ratio,
  };
});

/** Body of `POST /v1/dev/token`. */
export const devTokenBody = z.object({ sub: z.string().min(1).max(256).optional() });

/** A WebSocket message from the client. */
export const wsMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auth"), token: z.string().min(1).max(8192) }),
  z.object({
    type: z.literal("subscribe"),
    id: jobId,
    last_event_id: z.string().regex(/^\d{1,20}(-\d{1,20})?$/).optional(),
  }),
  z.object({ type: z.literal("unsubscribe"), id: jobId }),
]);

/** Turns a zod error into one sentence for the client (never raw zod output). */
export function describeIssues(error: z.ZodError): string {
  const parts = error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length > 0 ? issue.path.join(".") : "body";
    return `${where} ${issue.message.replace(/^Invalid input: /, "")}`;
  });
  return `Cannot accept the request: ${parts.join("; ")}`;
}
