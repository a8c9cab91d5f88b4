/** `GET /v1/jobs/:id` and `DELETE /v1/jobs/:id`: read and cancel a job. */
import { Hono } from "hono";
import type { AppDeps, AppEnv } from "./app.ts";
import { httpErrors } from "../lib/errors.ts";
import { authenticate, ownedJob, presentJob } from "./http.ts";

/** Routes over one job. */
export function jobRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/v1/jobs/:id", async (c) => {
    const owner = await authenticate(c, deps);
    const job = await ownedJob(deps, owner, c.req.param("id"), { image: true });
    return c.json(presentJob(job));
  });
  app.delete("/v1/jobs/:id", async (c) => {
    const owner = await authenticate(c, deps);
    const job = await ownedJob(deps, owner, c.req.param("id"));
    const result = await deps.broker.cancel(job.id);
    if (result === "missing") throw httpErrors.notFound();
    if (result === "ended") {
      throw httpErrors.conflict("Cannot cancel the job: it has already ended");
    }
    return c.json({ id: job.id, status: "canceled" }, 202);
  });
  return app;
}
