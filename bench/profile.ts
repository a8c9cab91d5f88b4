/**
 * Profiling the service: sums a V8 `.cpuprofile` (from `startService(env, { denoFlags: ["--cpu-prof"] })`)
 * into self time per function, per module and per kind of work (JSON, base64, Redis…).
 */

const ROOT = new URL("../", import.meta.url).href;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** Self time of one entry, in ms and in percent of the busy (non-idle) time. */
export interface SelfTime {
  name: string;
  ms: number;
  percent: number;
}

/** A profile summed up. */
export interface ProfileSummary {
  totalMs: number;
  busyMs: number;
  /** Busy time by area of the service (each sample charged to its nearest frame in our code or a package). */
  areas: SelfTime[];
  /** The same, by that nearest frame: who asked for the work, runtime internals included. */
  owners: SelfTime[];
  /** Self time by function, wherever it runs. */
  functions: SelfTime[];
}

/** Where a script lives: `npm:<package>`, `deno:<extension>`, a repo path, or the V8 builtins. */
export function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(V8 builtins and natives)";
  const npm = /\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/@]+)/.exec(url);
  if (npm) return `npm:${npm[1]}`;
  if (url.startsWith("ext:")) return `deno:${url.slice(4).split("/")[0]}`;
  if (url.startsWith("node:")) return "deno:node";
  if (url.startsWith(ROOT)) return url.slice(ROOT.length);
  const repo = /\/((?:lib|routes|workers)\/.*|main\.ts)$/.exec(url);
  return repo ? repo[1] : url;
}

const AREAS: [string, RegExp][] = [
  ["garbage collection", /^\(garbage collector\)/],
  ["provider calls (fetch: generations + image download)", /^lib\/provider\//],
  [
    "Redis (ioredis, RESP, our broker and scripts)",
    /npm:(ioredis|redis-parser|denque)|^lib\/(queue|redis)\//,
  ],
  ["live delivery (relay, WebSocket send)", /^lib\/live\/|^routes\/(ws|events)\.ts/],
  ["HTTP API (Hono, zod, routes)", /npm:(hono|@hono\/(?!prometheus)|zod)|^routes\//],
  ["auth (jose, tickets)", /npm:jose|^lib\/auth\//],
  [
    "logging and metrics",
    /npm:(@logtape|prom-client|@hono\/prometheus|@opentelemetry)|^lib\/(logging|metrics)/,
  ],
  ["worker loop", /^workers\/|^main\.ts/],
];

/** The nearest frame (from the leaf up) in our code or in an npm package, else the leaf itself. */
function ownerOf(id: number, byId: Map<number, ProfileNode>, parent: Map<number, number>): string {
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const { functionName, url } = byId.get(cur)!.callFrame;
    const module = moduleOf(url, functionName);
    if (module.startsWith("npm:")) return module;
    if (/^(lib|routes|workers)\/|^main\.ts/.test(module)) {
      return `${module} ${functionName || "(anonymous)"}`;
    }
  }
  const { functionName, url } = byId.get(id)!.callFrame;
  return `runtime: ${moduleOf(url, functionName)} ${url ? functionName : ""}`.trim();
}

function ranked(map: Map<string, number>, busy: number, top: number): SelfTime[] {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, ms]) => ({
    name,
    ms: Math.round(ms),
    percent: Math.round((ms / busy) * 1000) / 10,
  }));
}

const add = (map: Map<string, number>, key: string, ms: number) =>
  map.set(key, (map.get(key) ?? 0) + ms);

/**
 * Sums the `.cpuprofile` at `path` by area, by owning frame and by function (self time), from the
 * first request on.
 */
export function summarizeProfile(path: string, top = 20): ProfileSummary {
  const profile = JSON.parse(Deno.readTextFileSync(path)) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Start-up is left out: the window opens at the first sample inside a route (the first request).
  const inRoute = (id: number): boolean => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      if (/\/routes\/(images|ws)\.ts$/.test(byId.get(cur)!.callFrame.url)) return true;
    }
    return false;
  };
  const first = Math.max(0, profile.samples.findIndex(inRoute));
  const self = new Map<number, number>();
  for (let i = first; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + us / 1000);
  }
  const areas = new Map<string, number>();
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  let totalMs = 0, idleMs = 0;
  for (const [id, ms] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    totalMs += ms;
    if (functionName === "(idle)") {
      idleMs += ms;
      continue;
    }
    const owner = ownerOf(id, byId, parent);
    add(owners, owner, ms);
    const area = AREAS.find(([, re]) => re.test(owner.replace(/^runtime: /, "")))?.[0];
    add(areas, area ?? "runtime: event loop, timers, microtasks", ms);
    const name = functionName || "(anonymous)";
    add(functions, url ? `${name} (${moduleOf(url, name)}:${lineNumber + 1})` : name, ms);
  }
  const busyMs = totalMs - idleMs;
  return {
    totalMs: Math.round(totalMs),
    busyMs: Math.round(busyMs),
    areas: ranked(areas, busyMs, top),
    owners: ranked(owners, busyMs, top),
    functions: ranked(functions, busyMs, top),
  };
}

/** The newest `.cpuprofile` in `dir`. */
export async function newestProfile(dir: string): Promise<string> {
  let best: { path: string; mtime: number } | null = null;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".cpuprofile")) continue;
    const path = `${dir}/${entry.name}`;
    const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
    if (!best || mtime > best.mtime) best = { path, mtime };
  }
  if (!best) throw new Error(`Cannot find a CPU profile in ${dir}`);
  return best.path;
}
