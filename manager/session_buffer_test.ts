import assert from "node:assert/strict";
import { SessionBuffer } from "./session_buffer.ts";

Deno.test("SessionBuffer is full once its streams hold the limit, and resumes the waiting streams below 3/4 of it", () => {
  const events: string[] = [];
  const b = new SessionBuffer(1000, {
    onFirstFull: () => events.push("first-full"),
    onPause: () => events.push("pause"),
  });
  const x = b.hold(), y = b.hold();
  x.add(600);
  assert.equal(b.full, false);
  y.add(400);
  assert.equal(b.held, 1000);
  assert.equal(b.full, true);
  assert.equal(x.full, true);
  const woken: string[] = [];
  x.waitForRoom(() => woken.push("x"));
  y.waitForRoom(() => woken.push("y"));
  y.waitForRoom(() => woken.push("y again")); // a stream waits once; the last callback counts
  assert.equal(b.waiting, 2);
  assert.equal(b.pauses, 2);
  x.release(200); // 800: under the limit, not yet under the resume mark (750)
  assert.equal(b.full, false);
  assert.deepEqual(woken, []);
  x.release(51); // 749
  assert.deepEqual(woken, ["x", "y again"]);
  assert.equal(b.waiting, 0);
  x.add(251);
  y.add(1);
  assert.deepEqual(events, ["first-full", "pause", "pause"]); // logged once per session, not at each fill
});

Deno.test("BufferHold.set follows a queue's size, release never goes below zero, close gives back all and wakes others", () => {
  const b = new SessionBuffer(100);
  const q = b.hold(), other = b.hold();
  q.set(80);
  q.set(30);
  assert.equal(b.held, 30);
  q.release(1000);
  assert.equal(q.held, 0);
  assert.equal(b.held, 0);
  q.set(90);
  other.add(20);
  assert.equal(b.full, true);
  let woke = 0;
  other.waitForRoom(() => woke++);
  q.waitForRoom(() => assert.fail("a closed hold is not woken"));
  q.close();
  assert.equal(b.held, 20);
  assert.equal(woke, 1);
  q.add(500); // after close: ignored
  assert.equal(b.held, 20);
  other.close();
  assert.equal(b.held, 0);
});

Deno.test("A stream that resumes and finds the budget full again waits for the next resume, not in the same one", () => {
  const b = new SessionBuffer(100);
  const a = b.hold(), c = b.hold();
  a.add(100);
  let aWakes = 0;
  const onRoom = () => {
    aWakes++;
    a.add(60); // reads again and fills it past the limit: waits again
    if (b.full) a.waitForRoom(onRoom);
  };
  a.waitForRoom(onRoom);
  c.add(0);
  a.release(50); // 50 < 75: wakes a, which adds 60 (110) and waits again
  assert.equal(aWakes, 1);
  assert.equal(b.waiting, 1);
  a.release(40); // 70: wakes once more
  assert.equal(aWakes, 2);
  assert.equal(b.held, 130);
});

Deno.test("cancelWait stops waiting but keeps counting what is still queued", () => {
  const b = new SessionBuffer(10);
  const h = b.hold();
  h.add(10);
  h.waitForRoom(() => assert.fail("cancelled"));
  h.cancelWait();
  assert.equal(b.waiting, 0);
  assert.equal(b.held, 10);
  h.release(10);
  assert.equal(b.held, 0);
});

Deno.test("SessionBuffer refuses a limit that is not above zero", () => {
  assert.throws(() => new SessionBuffer(0), RangeError);
  assert.throws(() => new SessionBuffer(Number.NaN), RangeError);
});

Deno.test("Each stream's floor is its own: not counted against the budget, and a stream under it is never paused", () => {
  const b = new SessionBuffer(100);
  const tail = b.hold(50), reader = b.hold(50);
  tail.add(40); // an unacknowledged tail, under the floor
  assert.equal(b.held, 0);
  assert.equal(b.total, 40);
  reader.add(150); // 100 beyond its floor: the budget is full
  assert.equal(b.held, 100);
  assert.equal(b.full, true);
  assert.equal(reader.full, true);
  assert.equal(tail.full, false, "a stream under its floor goes on reading");
  tail.add(20); // 60: 10 beyond its floor
  assert.equal(b.held, 110);
  assert.equal(tail.full, true);
  let woke = false;
  reader.waitForRoom(() => (woke = true));
  reader.release(40); // counted 60 + 10 = 70 < 75
  assert.equal(woke, true);
  assert.equal(b.total, 170);
  tail.close();
  reader.close();
  assert.equal(b.total, 0);
  assert.equal(b.held, 0);
});
