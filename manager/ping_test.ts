import assert from "node:assert/strict";
import { OsError } from "../ffi/errors.ts";
import { recordingLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { MAX_PENDING_PER_SESSION, PingService } from "./ping.ts";

const req = (destination: string, timeoutMs = 100) => ({
  sessionId: "s",
  destination,
  data: new Uint8Array([1, 2, 3]),
  timeoutMs,
});

Deno.test("PingService answers with the reply's data, and with replied=false when none came", async () => {
  const pinger = { // a test double of IcmpPinger: 198.19.0.10 answers, every other address is silent
    echo: (dst: string, data: Uint8Array) => Promise.resolve(dst === "198.19.0.10" ? data.map((b) => b + 1) : null),
    close: () => Promise.resolve(),
  };
  const metrics = new Metrics();
  const pings = new PingService({ logger: recordingLogger(), metrics, allows: () => true, pinger: () => pinger });
  const yes = await pings.ping("s", req("198.19.0.10"));
  assert.deepEqual({ ...yes, data: [...yes.data] }, { replied: true, data: [2, 3, 4], unavailable: "" });
  assert.equal((await pings.ping("s", req("198.19.143.254"))).replied, false);
  assert.match(metrics.render(), /tp_manager_pings_total\{outcome="replied"\} 1\n.*outcome="timeout"\} 1/s);
  await pings.close();
});

Deno.test("PingService says once in its log, and in every answer, that the kernel refuses its ICMP socket", async () => {
  let calls = 0;
  const pinger = { // a test double of IcmpPinger whose kernel refuses ICMP sockets
    echo: () => {
      calls++;
      return Promise.reject(new OsError("outside net.ipv4.ping_group_range", "socket", 13));
    },
    close: () => Promise.resolve(),
  };
  const logger = recordingLogger();
  const pings = new PingService({ logger, metrics: new Metrics(), allows: () => true, pinger: () => pinger });
  for (let i = 0; i < 3; i++) {
    const r = await pings.ping("s", req("198.19.0.10"));
    assert.equal(r.replied, false);
    assert.match(r.unavailable, /ping_group_range/);
  }
  assert.equal(calls, 1, "the kernel's refusal is remembered");
  assert.equal(logger.lines.filter((l) => l.msg === "ICMP echo unavailable").length, 1);
  assert.match(pings.unavailable, /ping_group_range/);
  await pings.close();
});

Deno.test("PingService sends at most MAX_PENDING_PER_SESSION echoes of one session at once, and none outside the allowed destinations", async () => {
  const waiting: (() => void)[] = [];
  const pinger = { // a test double of IcmpPinger that answers when told
    echo: (_dst: string, data: Uint8Array) => new Promise<Uint8Array | null>((r) => waiting.push(() => r(data))),
    close: () => Promise.resolve(),
  };
  const pings = new PingService({
    logger: recordingLogger(),
    metrics: new Metrics(),
    allows: (ip) => ip.startsWith("198.19."),
    pinger: () => pinger,
  });
  const all = Array.from({ length: MAX_PENDING_PER_SESSION + 1 }, () => pings.ping("s", req("198.19.0.10")));
  const over = await all[MAX_PENDING_PER_SESSION]!;
  assert.equal(over.replied, false);
  assert.equal(waiting.length, MAX_PENDING_PER_SESSION);
  const other = pings.ping("t", req("198.19.0.10"));
  assert.equal(waiting.length, MAX_PENDING_PER_SESSION + 1, "another session is not held back");
  for (const w of waiting) w();
  assert.equal((await Promise.all([...all.slice(0, -1), other])).every((r) => r.replied), true);
  await assert.rejects(pings.ping("s", req("8.8.8.8")), /outside the allowed destinations/);
  await pings.close();
});
