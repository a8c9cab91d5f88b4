/** `POST /v1/dev/token`: a development token, only while the process signs with its own random secret. */
import { createRoute } from "@hono/zod-openapi";
import { type AppDeps, optionalRoutes, router } from "./deps.ts";
import { jsonBody } from "./body.ts";
import { devTokenAnswer, errors, json } from "./responses.ts";
import { devTokenBody } from "./schemas.ts";

/** Lifetime of a development token. */
export const DEV_TOKEN_TTL_SEC = 3600;

/** The route definition of `POST /v1/dev/token`. */
export const devTokenRoute = createRoute({
  method: "post",
  path: "/v1/dev/token",
  operationId: "createDevToken",
  tags: ["dev"],
  security: [],
  summary: "A development token (DEV_MODE=1 with the random dev secret only)",
  description: "Absent (404) unless the process runs with `DEV_MODE=1` and signs with its own " +
    "random secret. An empty body means `{}`; the body is read as JSON whatever its `Content-Type`.",
  middleware: jsonBody({ optional: true }),
  request: { body: { required: false, content: json(devTokenBody) } },
  responses: {
    200: { description: "A token valid for one hour", content: json(devTokenAnswer) },
    ...errors({
      400: "Cannot parse the body: it is not JSON",
      422: "Cannot accept the request: `sub` is invalid (or the body is not an object)",
    }),
  },
});

/** The dev token route, present only when the process may sign tokens. */
export function devRoutes(deps: AppDeps) {
  const signer = deps.config.devMode ? deps.auth.sign : undefined;
  return optionalRoutes(signer, (sign) =>
    router().openapi(devTokenRoute, async (c) => {
      const sub = c.req.valid("json").sub ?? "dev-user";
      return c.json({ token: await sign(sub, DEV_TOKEN_TTL_SEC), sub }, 200);
    }));
}
