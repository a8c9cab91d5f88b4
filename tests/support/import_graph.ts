/**
 * The import-graph check of `deno task check`: builds the graph of local modules with `deno info --json`
 * and fails, naming each, on an import cycle (type-only imports count) or an import across the rooms'
 * boundaries (lib/ never imports routes/ or workers/, routes/ never imports workers/, and so on).
 */

/** Local module (a path relative to the project root, e.g. `lib/config.ts`) -> the local modules it imports. */
export type ImportGraph = Map<string, Set<string>>;

/** A forbidden edge: a module under `from` must not import a module under any of `to`. */
export interface BoundaryRule {
  from: string;
  to: string[];
  why: string;
}

/** The rooms' boundaries: the composition root and the tests may import anything; nothing imports them. */
export const RULES: BoundaryRule[] = [
  {
    from: "lib/",
    to: ["routes/", "workers/", "main.ts", "tests/", "bench/"],
    why: "lib/ is the domain: it knows no HTTP layer, no worker and no composition root",
  },
  {
    from: "routes/",
    to: ["workers/", "main.ts", "tests/", "bench/"],
    why: "routes/ is the HTTP layer: it reaches workers only through what main.ts hands it",
  },
  {
    from: "workers/",
    to: ["routes/", "main.ts", "tests/", "bench/"],
    why: "workers/ run jobs: they know no HTTP layer and no composition root",
  },
];

/** What the check found: each cycle as a path that returns to its start, and each forbidden edge. */
export interface GraphProblems {
  cycles: string[][];
  badEdges: { from: string; to: string; why: string }[];
}

/** Which of `deno info --json`'s fields this check reads. */
export interface DenoInfo {
  modules: {
    specifier: string;
    dependencies?: {
      specifier?: string;
      code?: { specifier?: string };
      type?: { specifier?: string };
    }[];
  }[];
}

/**
 * Adds the local modules of one `deno info --json` answer to `graph`: modules and imports under
 * `rootUrl` (a `file://` URL ending in `/`), with value and type-only imports alike.
 */
export function addDenoInfo(graph: ImportGraph, info: DenoInfo, rootUrl: string): ImportGraph {
  const local = (specifier: string | undefined) =>
    specifier?.startsWith(rootUrl) ? decodeURIComponent(specifier.slice(rootUrl.length)) : null;
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (from === null) continue;
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const dependency of module.dependencies ?? []) {
      for (const target of [dependency.code?.specifier, dependency.type?.specifier]) {
        const to = local(target);
        if (to !== null) edges.add(to);
      }
    }
  }
  return graph;
}

/** Finds the cycles and forbidden edges of a graph; pure, so that it is tested on small graphs. */
export function analyzeGraph(graph: ImportGraph, rules: BoundaryRule[] = RULES): GraphProblems {
  const badEdges: GraphProblems["badEdges"] = [];
  for (const [from, targets] of sorted(graph)) {
    for (const to of [...targets].sort()) {
      const rule = rules.find((r) => under(from, r.from) && r.to.some((room) => under(to, room)));
      if (rule) badEdges.push({ from, to, why: rule.why });
    }
  }
  return { cycles: findCycles(graph), badEdges };
}

/** The problems as lines a person reads, one per cycle or edge; empty when there are none. */
export function describeProblems({ cycles, badEdges }: GraphProblems): string[] {
  return [
    ...cycles.map((cycle) => `import cycle: ${cycle.join(" → ")}`),
    ...badEdges.map(({ from, to, why }) => `forbidden import: ${from} → ${to} (${why})`),
  ];
}

/**
 * One shortest cycle through each module that lies on a cycle, each cycle once and starting from its
 * first module in sort order, found within the strongly connected components (Tarjan's algorithm).
 */
function findCycles(graph: ImportGraph): string[][] {
  const cycles: string[][] = [];
  const seen = new Set<string>();
  for (const component of components(graph)) {
    const members = new Set(component);
    for (const start of [...component].sort()) {
      const cycle = shortestCycle(graph, start, members);
      if (cycle === null) continue;
      const body = cycle.slice(0, -1);
      const first = body.indexOf([...body].sort()[0]);
      const rotated = [...body.slice(first), ...body.slice(0, first)];
      const key = rotated.join("\0");
      if (seen.has(key)) continue;
      seen.add(key);
      cycles.push([...rotated, rotated[0]]);
    }
  }
  return cycles;
}

/** The strongly connected components that hold a cycle (more than one module, or a self-import). */
function components(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    for (let member = stack.pop()!;; member = stack.pop()!) {
      onStack.delete(member);
      component.push(member);
      if (member === node) break;
    }
    if (component.length > 1 || graph.get(node)?.has(node)) found.push(component);
  };
  for (const [node] of sorted(graph)) if (!index.has(node)) visit(node);
  return found;
}

/** The shortest path from `start` back to itself within `members` (breadth first), or null. */
function shortestCycle(graph: ImportGraph, start: string, members: Set<string>): string[] | null {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i];
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(parent.get(path[0])!);
        return [...path, start];
      }
      if (parent.has(next)) continue;
      parent.set(next, node);
      queue.push(next);
    }
  }
  return null;
}

function under(path: string, room: string): boolean {
  return room.endsWith("/") ? path.startsWith(room) : path === room;
}

function sorted(graph: ImportGraph): [string, Set<string>][] {
  return [...graph].sort(([a], [b]) => a.localeCompare(b));
}

/** Every local source file the check starts from: main.ts and the .ts files of the rooms. */
async function entryPoints(root: string): Promise<string[]> {
  const files = ["main.ts"];
  const skip = ["bench/peer", "bench/results"];
  const walk = async (dir: string): Promise<void> => {
    if (skip.includes(dir)) return;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(`${root}/${dir}`)];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && /\.tsx?$/.test(entry.name)) files.push(path);
    }
  };
  for (const dir of ["lib", "routes", "workers", "tests", "bench"]) await walk(dir);
  return files;
}

/** Runs `deno info --json` on one file of the project. */
async function denoInfo(root: string, file: string): Promise<DenoInfo> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", file],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const reason = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`Cannot read the import graph of ${file}: ${reason}`);
  }
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** Builds the project's graph from every entry point not already reached, then reports. */
async function main(): Promise<number> {
  const root = new URL("../../", import.meta.url);
  const rootPath = decodeURIComponent(root.pathname).replace(/\/$/, "");
  const graph: ImportGraph = new Map();
  for (const file of await entryPoints(rootPath)) {
    if (graph.has(file)) continue;
    addDenoInfo(graph, await denoInfo(rootPath, file), root.href);
  }
  const problems = describeProblems(analyzeGraph(graph));
  const edges = [...graph.values()].reduce((sum, targets) => sum + targets.size, 0);
  if (problems.length === 0) {
    console.log(
      `import graph: ${graph.size} local modules, ${edges} imports, no cycle, no forbidden import`,
    );
    return 0;
  }
  for (const line of problems) console.error(line);
  console.error(`import graph: ${problems.length} problem(s) in ${graph.size} local modules`);
  return 1;
}

if (import.meta.main) Deno.exit(await main());
