// The peer for `deno task bench`: the same job service built the way most teams would today, with
// Express + jsonwebtoken (HS256) for the API, BullMQ on the same Redis (its own prefix) for the queue,
// a BullMQ Worker in this process calling the fake xAI, and socket.io rooms for the notifications.
//
// Client flow (what bench/driver.ts does): connect one socket.io socket with `auth: { token }`,
// `emit("subscribe", id, ack)` to join the job's room, then `POST /v1/images {prompt, id}` with the
// Bearer JWT; the worker emits `notification` ({id, type, success, data: {image}, error}) to the room.
//
// Environment: PORT, REDIS_URL, JWT_SECRET, GROK_API, XAI_API_KEY, WORKER_CONCURRENCY, BULL_PREFIX.
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import express from "express";
import jwt from "jsonwebtoken";
import { Queue, Worker } from "bullmq";
import { Server } from "socket.io";

const env = process.env;
const secret = env.JWT_SECRET;
const grokApi = env.GROK_API;
const apiKey = env.XAI_API_KEY ?? "k";
const prefix = env.BULL_PREFIX ?? "peer";
const concurrency = Number(env.WORKER_CONCURRENCY ?? "8");
const connection = { url: env.REDIS_URL, maxRetriesPerRequest: null };
const QUEUE = "images";

function verify(token) {
  const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
  if (typeof claims.sub !== "string" || claims.sub === "") throw new Error("no sub");
  return claims.sub;
}

const queue = new Queue(QUEUE, { connection, prefix });
const app = express();
app.use(express.json({ limit: "64kb" }));
app.get("/healthz", (_req, res) => res.json({ status: "ok" }));
app.post("/v1/images", async (req, res) => {
  let owner;
  try {
    owner = verify((req.get("authorization") ?? "").replace(/^Bearer /, ""));
  } catch {
    return res.status(401).json({ error: { code: "unauthorized", message: "Bad token" } });
  }
  const prompt = typeof req.body?.prompt === "string" ? req.body.prompt.trim() : "";
  if (prompt.length < 1 || prompt.length > 4000) {
    return res.status(422).json({ error: { code: "invalid_request", message: "Bad prompt" } });
  }
  const id = typeof req.body.id === "string" ? req.body.id : randomUUID();
  await queue.add("image", { id, owner, prompt }, {
    jobId: id,
    attempts: 5,
    backoff: { type: "exponential", delay: 1000 },
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 1000 },
  });
  res.status(202).json({ id, status: "queued" });
});

const server = createServer(app);
const io = new Server(server, { serveClient: false });
io.use((socket, next) => {
  try {
    socket.data.owner = verify(String(socket.handshake.auth?.token ?? ""));
    next();
  } catch {
    next(new Error("unauthorized"));
  }
});
io.on("connection", (socket) => {
  // Rooms are per owner and job, so a socket only ever hears about its owner's jobs.
  socket.on("subscribe", (id, ack) => {
    socket.join(`${socket.data.owner}:${id}`);
    if (typeof ack === "function") ack({ ok: true });
  });
});

async function generate(job) {
  const response = await fetch(`${grokApi}/images/generations`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: "grok-2-image-1212",
      prompt: job.data.prompt,
      response_format: "b64_json",
    }),
  });
  if (!response.ok) throw new Error(`xAI answered ${response.status}`);
  const body = await response.json();
  // The seed service's shape: the image as a JPEG data URL.
  return { image: `data:image/jpeg;base64,${body.data[0].b64_json}` };
}

const worker = new Worker(QUEUE, generate, { connection, prefix, concurrency });
function notify(job, notification) {
  io.to(`${job.data.owner}:${job.data.id}`).emit("notification", {
    id: job.data.id,
    at: new Date().toISOString(),
    ...notification,
  });
}
worker.on("completed", (job, result) => {
  notify(job, { type: "succeeded", success: true, data: result });
});
worker.on("failed", (job) => {
  if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) {
    notify(job, { type: "failed", success: false, error: "Error processing job" });
  }
});
worker.on("error", (error) => console.error("worker error", error.message));

server.listen(Number(env.PORT ?? "8100"), "127.0.0.1", () => console.log("peer listening"));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await worker.close();
    await queue.close();
    io.close();
    process.exit(0);
  });
}
