import assert from "node:assert/strict";
import { Stages } from "./stages.ts";

/** A stage that records its coming up and going down in `events`. */
function recorded(events: string[], name: string) {
  return () => {
    events.push(`up ${name}`);
    return { value: name, down: () => void events.push(`down ${name}`) };
  };
}

Deno.test("Stages.down() takes the stages down in reverse order, each awaited before the next", async () => {
  const events: string[] = [];
  const stages = new Stages();
  assert.equal(await stages.up("device", recorded(events, "device")), "device");
  await stages.up("routes", async () => {
    await Promise.resolve();
    events.push("up routes");
    return {
      value: undefined,
      down: async () => {
        await new Promise((r) => setTimeout(r, 0));
        events.push("down routes");
      },
    };
  });
  stages.defer("hook", () => void events.push("down hook"));
  await stages.up("dns", recorded(events, "dns"));
  assert.deepEqual(stages.names, ["device", "routes", "hook", "dns"]);
  await stages.down(() => assert.fail("no teardown throws"));
  assert.deepEqual(events, ["up device", "up routes", "up dns", "down dns", "down hook", "down routes", "down device"]);
  assert.deepEqual(stages.names, []);
  await stages.down(() => assert.fail("nothing is left"));
  assert.equal(events.length, 7, "a second down() takes nothing down twice");
});

Deno.test("a stage that fails midway leaves only the stages before it to take down, and its error unchanged", async () => {
  const events: string[] = [];
  const stages = new Stages();
  const failure = new Error("cannot create the device");
  const run = async () => {
    await stages.up("link", recorded(events, "link"));
    await stages.up("netlink", recorded(events, "netlink"));
    await stages.up("device", () => {
      throw failure;
    });
    await stages.up("routes", recorded(events, "routes"));
  };
  const thrown = await run().then(() => null, (e) => e);
  assert.equal(thrown, failure);
  await stages.down(() => assert.fail("no teardown throws"));
  assert.deepEqual(events, ["up link", "up netlink", "down netlink", "down link"]);
});

Deno.test("a teardown that throws is reported, and the stages before it still go down", async () => {
  const events: string[] = [];
  const failed: string[] = [];
  const stages = new Stages();
  await stages.up("link", recorded(events, "link"));
  await stages.up("dns", () => ({
    value: 0,
    down: () => {
      throw new Error("resolv.conf is read-only");
    },
  }));
  await stages.up("state", () => ({ value: 0, down: () => Promise.reject(new Error("state file gone")) }));
  await stages.down((name, e) => failed.push(`${name}: ${(e as Error).message}`));
  assert.deepEqual(failed, ["state: state file gone", "dns: resolv.conf is read-only"]);
  assert.deepEqual(events, ["up link", "down link"]);
});
