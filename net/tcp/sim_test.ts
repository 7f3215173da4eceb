import assert from "node:assert/strict";
import { type SimOptions, simulate } from "./_sim.ts";

const MB = 1 << 20;
/**
 * At 20 % loss a FIN can be retransmitted after a backed-off RTO of tens of seconds; the proxy's 2 s TIME-WAIT
 * would then meet it with an RST (the unmatched-segment reply). The simulation checks the protocol, so it keeps
 * TIME-WAIT above the 60 s maximum RTO.
 */
const LONG_TIME_WAIT = { timeWaitMs: 65_000 };

function check(o: SimOptions): void {
  const r = simulate(o);
  assert.deepEqual(r.errors, [], `seed ${o.seed}`);
  assert.equal(r.receivedAtB, o.bytesAtoB, "every byte A sent arrived at B exactly once");
  assert.equal(r.receivedAtA, o.bytesBtoA, "every byte B sent arrived at A exactly once");
  assert.equal(r.stateA, "CLOSED");
  assert.equal(r.stateB, "CLOSED");
  assert.equal(r.a!.error, null);
  assert.equal(r.b!.error, null);
}

for (const loss of [0, 0.01, 0.05, 0.1, 0.2]) {
  Deno.test(`simulation: ${loss * 100} % loss with reordering and duplication moves 1 MiB each way in order, exactly once, and both ends close`, () => {
    for (const seed of [1, 2, 3]) {
      check({
        seed: seed * 1000 + loss * 100,
        loss,
        reorder: Math.min(0.3, loss * 2 + 0.02),
        duplicate: loss / 2,
        bytesAtoB: MB,
        bytesBtoA: MB - 12345,
        tcp: LONG_TIME_WAIT,
      });
    }
  });
}

Deno.test("simulation: without SACK and timestamps (NewReno alone), 10 % loss", () => {
  check({
    seed: 7,
    loss: 0.1,
    reorder: 0.1,
    duplicate: 0.05,
    bytesAtoB: MB / 2,
    bytesBtoA: MB / 4,
    tcp: { sack: false, timestamps: false, ...LONG_TIME_WAIT },
  });
});

Deno.test("simulation: a slow reader with small buffers exercises zero windows and window updates", () => {
  check({
    seed: 11,
    loss: 0.05,
    reorder: 0.05,
    bytesAtoB: MB / 2,
    bytesBtoA: MB / 8,
    readChunk: 3000,
    tcp: { recvBufferLimit: 8192, sendBufferLimit: 16384, mss: 1460, ...LONG_TIME_WAIT },
  });
});

Deno.test("simulation: 64 KiB segments (MSS 65495, as on the daemon's MTU 65535 TUN) with 5 % loss", () => {
  check({
    seed: 13,
    loss: 0.05,
    reorder: 0.1,
    duplicate: 0.02,
    bytesAtoB: 4 * MB,
    bytesBtoA: 2 * MB,
    tcp: { mss: 65495, recvBufferLimit: 4 * MB, sendBufferLimit: 4 * MB, ...LONG_TIME_WAIT },
    verify: true,
  });
});
