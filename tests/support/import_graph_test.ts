/** Tests of the import-graph check on small synthetic graphs: cycles, forbidden edges, a clean graph. */
import assert from "node:assert/strict";
import { addDenoInfo, analyzeGraph, describeProblems, type ImportGraph } from "./import_graph.ts";

/** A graph from `{ module: [imports…] }`. */
function graphOf(edges: Record<string, string[]>): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const [from, targets] of Object.entries(edges)) {
    graph.set(from, new Set(targets));
    for (const to of targets) if (!graph.has(to)) graph.set(to, new Set());
  }
  return graph;
}

Deno.test("a clean graph of the rooms has no cycle and no forbidden import", () => {
  const graph = graphOf({
    "main.ts": ["routes/app.ts", "workers/image_worker.ts", "lib/config.ts"],
    "routes/app.ts": ["routes/jobs.ts", "routes/http.ts", "lib/errors.ts"],
    "routes/jobs.ts": ["routes/http.ts", "lib/queue/types.ts"],
    "workers/image_worker.ts": ["workers/job_run.ts", "lib/queue/types.ts"],
    "workers/job_run.ts": ["lib/errors.ts"],
    "tests/routes/jobs_test.ts": ["main.ts", "routes/app.ts", "tests/support/app.ts"],
    "bench/run.ts": ["tests/support/app.ts", "lib/queue/scripts.ts"],
  });
  const problems = analyzeGraph(graph);
  assert.deepEqual(problems, { cycles: [], badEdges: [] });
  assert.deepEqual(describeProblems(problems), []);
});

Deno.test("a cycle is named as the path that returns to its start", async (t) => {
  await t.step("two modules that import each other", () => {
    const graph = graphOf({
      "routes/app.ts": ["routes/jobs.ts"],
      "routes/jobs.ts": ["routes/app.ts"],
    });
    assert.deepEqual(analyzeGraph(graph).cycles, [[
      "routes/app.ts",
      "routes/jobs.ts",
      "routes/app.ts",
    ]]);
  });
  await t.step("a longer loop is reported once, not once per member", () => {
    const graph = graphOf({
      "lib/a.ts": ["lib/b.ts"],
      "lib/b.ts": ["lib/c.ts"],
      "lib/c.ts": ["lib/a.ts"],
      "lib/d.ts": ["lib/a.ts"],
    });
    assert.deepEqual(describeProblems(analyzeGraph(graph)), [
      "import cycle: lib/a.ts → lib/b.ts → lib/c.ts → lib/a.ts",
    ]);
  });
  await t.step(
    "an app that imports every route while each route imports it: one cycle each",
    () => {
      const graph = graphOf({
        "routes/app.ts": ["routes/jobs.ts", "routes/ws.ts", "routes/http.ts"],
        "routes/jobs.ts": ["routes/app.ts", "routes/http.ts"],
        "routes/ws.ts": ["routes/app.ts"],
      });
      assert.deepEqual(analyzeGraph(graph).cycles, [
        ["routes/app.ts", "routes/jobs.ts", "routes/app.ts"],
        ["routes/app.ts", "routes/ws.ts", "routes/app.ts"],
      ]);
    },
  );
  await t.step("a module that imports itself", () => {
    const graph = graphOf({ "lib/self.ts": ["lib/self.ts"] });
    assert.deepEqual(analyzeGraph(graph).cycles, [["lib/self.ts", "lib/self.ts"]]);
  });
});

Deno.test("an import across the rooms' boundaries is named with its rule", async (t) => {
  await t.step("lib/ importing routes/ or workers/", () => {
    const graph = graphOf({
      "lib/live/relay.ts": ["routes/http.ts"],
      "lib/queue/memory.ts": ["workers/retry.ts"],
    });
    const { cycles, badEdges } = analyzeGraph(graph);
    assert.deepEqual(cycles, []);
    assert.deepEqual(badEdges.map(({ from, to }) => `${from} → ${to}`), [
      "lib/live/relay.ts → routes/http.ts",
      "lib/queue/memory.ts → workers/retry.ts",
    ]);
    assert.match(
      describeProblems({ cycles, badEdges })[0],
      /^forbidden import: lib\/live\/relay.ts → routes\/http.ts \(lib\/ is/,
    );
  });
  await t.step("routes/ importing workers/", () => {
    const graph = graphOf({ "routes/jobs.ts": ["workers/image_worker.ts", "lib/errors.ts"] });
    assert.deepEqual(analyzeGraph(graph).badEdges.map(({ to }) => to), ["workers/image_worker.ts"]);
  });
  await t.step("the rooms importing the composition root or the tests", () => {
    const graph = graphOf({
      "lib/config.ts": ["main.ts"],
      "workers/seed.ts": ["tests/support/app.ts"],
      "routes/ws.ts": ["bench/stats.ts"],
    });
    assert.equal(analyzeGraph(graph).badEdges.length, 3);
  });
  await t.step("a file named like a room is not inside it", () => {
    const graph = graphOf({ "lib/x.ts": ["routes.ts", "workers_notes.ts", "lib/main.ts"] });
    assert.deepEqual(analyzeGraph(graph).badEdges, []);
  });
});

Deno.test("addDenoInfo keeps local modules and their value and type-only imports", () => {
  const root = "file:///work/app/";
  const graph = addDenoInfo(new Map(), {
    modules: [
      {
        specifier: `${root}routes/app.ts`,
        dependencies: [
          { specifier: "hono", code: { specifier: "npm:hono@^4" } },
          { specifier: "./jobs.ts", code: { specifier: `${root}routes/jobs.ts` } },
          { specifier: "../lib/config.ts", type: { specifier: `${root}lib/config.ts` } },
        ],
      },
      {
        specifier: `${root}routes/jobs.ts`,
        dependencies: [{ specifier: "./app.ts", type: { specifier: `${root}routes/app.ts` } }],
      },
      { specifier: `${root}lib/config.ts` },
      { specifier: "file:///elsewhere/x.ts", dependencies: [] },
      { specifier: "npm:/hono@4.13.19/" },
    ],
  }, root);
  assert.deepEqual([...graph.keys()].sort(), ["lib/config.ts", "routes/app.ts", "routes/jobs.ts"]);
  assert.deepEqual([...graph.get("routes/app.ts")!].sort(), ["lib/config.ts", "routes/jobs.ts"]);
  assert.deepEqual(analyzeGraph(graph).cycles, [[
    "routes/app.ts",
    "routes/jobs.ts",
    "routes/app.ts",
  ]]);
});
