import assert from "node:assert/strict";
import fc from "fast-check";
import { InProgress } from "./_in_progress.ts";

const limits = (max: number, evictionBurst = 100, evictionsPerSecond = 0) => ({
  max,
  evictionBurst,
  evictionsPerSecond,
});

Deno.test("InProgress admits up to its bound, then refuses a connection to the busiest destination", () => {
  const p = new InProgress<string>(limits(3));
  for (const id of ["a1", "a2", "a3"]) {
    assert.deepEqual(p.admit("A", 0), { admit: true });
    p.add("A", id);
  }
  assert.deepEqual(p.admit("A", 0), { admit: false });
  assert.equal(p.size, 3);
  assert.equal(p.remove("a2"), true);
  assert.equal(p.remove("a2"), false);
  assert.deepEqual(p.admit("A", 0), { admit: true }, "a freed place is taken again");
});

Deno.test("InProgress gives a quieter destination the busiest one's oldest place, and only when that is fairer", () => {
  const p = new InProgress<string>(limits(4));
  for (const id of ["a1", "a2", "a3"]) p.add("A", id);
  p.add("B", "b1");
  // A holds 3, B 1: a connection to C (0) takes a1's place; one more to B (1 + 1 < 3) takes a2's.
  assert.deepEqual(p.admit("C", 0), { admit: true, evict: "a1" });
  p.remove("a1");
  p.add("C", "c1");
  // Now A 2, B 1, C 1: B would hold 2 beside A's 1, no fairer: refused. D (0) is, and takes A's oldest.
  assert.deepEqual(p.admit("B", 0), { admit: false });
  assert.deepEqual(p.admit("D", 0), { admit: true, evict: "a2" });
  p.remove("a2");
  p.add("D", "d1");
  // Every destination holds 1: nobody's place is given away.
  assert.deepEqual(p.admit("E", 0), { admit: false });
  assert.deepEqual([p.count("A"), p.count("B"), p.count("C"), p.count("D")], [1, 1, 1, 1]);
});

Deno.test("InProgress limits evictions to a token bucket on the caller's clock", () => {
  const p = new InProgress<string>(limits(10, 2, 4));
  for (let i = 0; i < 10; i++) p.add("A", `a${i}`);
  let n = 0;
  const evictAt = (now: number, key: string): boolean => {
    const r = p.admit(key, now);
    if (!r.admit) return false;
    p.remove(r.evict!);
    p.add(key, `${key}${n++}`);
    return true;
  };
  assert.deepEqual([evictAt(0, "B"), evictAt(0, "C"), evictAt(0, "D")], [true, true, false], "a burst of 2");
  assert.equal(evictAt(200, "D"), false, "0.8 tokens after 200 ms at 4/s");
  assert.equal(evictAt(250, "D"), true, "one token after 250 ms");
  assert.deepEqual([evictAt(10_000, "E"), evictAt(10_000, "F"), evictAt(10_000, "G")], [true, true, false]);
});

Deno.test("InProgress evicts from a largest group as a full scan would find it, through any adds and removes", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 5 }), fc.nat(40)), { maxLength: 300 }),
      (ops) => {
        const p = new InProgress<number>(limits(8, 1e9));
        const groups = new Map<number, number[]>();
        let next = 0;
        for (const [add, key, pick] of ops) {
          const all = [...groups.values()].flat();
          if (!add && all.length > 0) {
            const victim = all[pick % all.length]!;
            assert.equal(p.remove(victim), true);
            for (const [k, g] of groups) {
              const i = g.indexOf(victim);
              if (i >= 0) g.splice(i, 1);
              if (g.length === 0) groups.delete(k);
            }
            continue;
          }
          const largest = Math.max(0, ...[...groups.values()].map((g) => g.length));
          const mine = groups.get(key)?.length ?? 0;
          const r = p.admit(key, 0);
          if (all.length < 8) assert.deepEqual(r, { admit: true });
          else if (mine + 1 < largest) {
            assert.ok(r.admit && r.evict !== undefined);
            const from = [...groups.values()].find((g) => g[0] === r.evict)!;
            assert.equal(from.length, largest, "evicted from a largest group, its oldest");
            p.remove(r.evict);
            from.shift();
            for (const [k, g] of groups) if (g.length === 0) groups.delete(k);
          } else {
            assert.deepEqual(r, { admit: false });
            continue;
          }
          p.add(key, next);
          groups.set(key, [...(groups.get(key) ?? []), next++]);
          assert.equal(p.size, [...groups.values()].flat().length);
        }
      },
    ),
  );
});
