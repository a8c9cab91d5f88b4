/** The waiting room's fair order: owners take turns whatever their backlogs, each owner's jobs in order. */
import assert from "node:assert/strict";
import { FairRoom } from "../../../lib/pace/fair_room.ts";

Deno.test("a light owner's job waits one turn behind another owner's backlog, not the whole of it", () => {
  const room = new FairRoom();
  for (let i = 0; i < 100; i++) room.park(`heavy-${String(i).padStart(3, "0")}`, "heavy");
  assert.deepEqual(room.pop(3), ["heavy-000", "heavy-001", "heavy-002"]);
  room.park("light-1", "light");
  const next = room.pop(2);
  assert.ok(next.includes("light-1"), `light-1 among the next two turns: ${next}`);
  assert.equal(room.size, 97 + 1 - 2);
});

Deno.test("owners with jobs waiting get equal turns, and each owner's jobs keep their order", () => {
  const room = new FairRoom();
  for (let i = 0; i < 30; i++) room.park(`a-${String(i).padStart(2, "0")}`, "a");
  for (let i = 0; i < 5; i++) room.park(`b-${i}`, "b");
  for (let i = 0; i < 5; i++) room.park(`c-${i}`, "c");
  const first15 = room.pop(15);
  const byOwner = (o: string) => first15.filter((id) => id.startsWith(`${o}-`));
  assert.deepEqual(byOwner("a").length, 5);
  assert.deepEqual(byOwner("b"), ["b-0", "b-1", "b-2", "b-3", "b-4"]);
  assert.deepEqual(byOwner("c"), ["c-0", "c-1", "c-2", "c-3", "c-4"]);
  // Then the backlog's owner has every turn, still in order.
  assert.deepEqual(
    room.pop(25),
    Array.from({ length: 25 }, (_, i) => `a-${String(i + 5).padStart(2, "0")}`),
  );
});

Deno.test("a job put back goes before its owner's later jobs, and rank follows the order", () => {
  const room = new FairRoom();
  room.park("a-1", "a");
  room.park("a-2", "a");
  room.park("b-1", "b");
  assert.deepEqual(room.pop(1), ["a-1"]);
  room.park("a-1", "a", true);
  assert.equal(room.rank("a-1"), 0);
  assert.equal(room.rank("missing"), null);
  assert.deepEqual(room.pop(3), ["a-1", "b-1", "a-2"]);
});

Deno.test("an owner whose line emptied is forgotten: it returns at the clock, not behind its old tag", () => {
  const room = new FairRoom();
  for (let i = 0; i < 10; i++) room.park(`a-${i}`, "a");
  room.park("b-0", "b");
  room.pop(11);
  room.park("b-1", "b");
  room.park("a-x", "a");
  assert.deepEqual(room.pop(2).sort(), ["a-x", "b-1"]);
});
