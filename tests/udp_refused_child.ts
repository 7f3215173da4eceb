/**
 * Child of tests/udp_refused_test.ts, run in a network namespace of its own whose peer (198.18.0.2, behind a veth)
 * listens on no UDP port and sends one ICMP message at most. Sends COUNT datagrams to HOST:9 together and prints one
 * JSON line: whether the closed port was reported, and how.
 *   ffi MODE: UdpSocket.sendMany (one batch), then receive() for up to 3 s.
 *   tunnel MODE: a manager on 127.0.0.1 and tp's client; COUNT datagrams written in one tick on a UDP tunnel (the
 *   manager sends them with sendMany), then read() for up to 3 s: a reset with the code REFUSED is what the
 *   workstation answers its app with ICMP port unreachable for.
 *
 *   deno run -A tests/udp_refused_child.ts ffi|tunnel HOST COUNT
 */
import { ECONNREFUSED, UdpPoller } from "../ffi/udp_socket.ts";
import { OsError } from "../ffi/errors.ts";
import { connect, DialCode } from "../proto/mod.ts";
import { TunnelResetError } from "../proto/tunnel.ts";
import { startManager } from "./manager_fixture.ts";

const [mode, host, countArg] = Deno.args;
const count = Number(countArg);
const datagrams = Array.from({ length: count }, (_, i) => new Uint8Array([i, 1, 2, 3]));

if (mode === "ffi") {
  const poller = new UdpPoller();
  const socket = poller.connect({ hostname: host!, port: 9 });
  const r = socket.sendMany(datagrams);
  let how = r.failed ? `sendMany errno ${r.failed.error.errno} at ${r.failed.index}` : "";
  let refused = r.failed?.error.errno === ECONNREFUSED;
  if (!r.failed) {
    const timer = setTimeout(() => socket.close(), 3_000);
    try {
      const got = await socket.receive();
      how = `receive: ${got.length} datagrams`;
    } catch (e) {
      refused = e instanceof OsError && e.errno === ECONNREFUSED;
      how = `receive: ${e}`;
    }
    clearTimeout(timer);
  }
  socket.close();
  await poller.close();
  console.log(JSON.stringify({ sent: r.sent, refused, how }));
} else {
  const m = await startManager({ podCidrs: ["198.18.0.0/30"], udpIdleTimeoutMs: 10_000 });
  const s = await connect(m.url, undefined);
  const t = await s.openTunnel({
    protocol: "udp",
    source: { ip: "198.18.9.1", port: 5353 },
    destination: { ip: host!, port: 9 },
  });
  for (const d of datagrams) t.write(d);
  let refused = false, how = "";
  const timer = setTimeout(() => t.reset("no answer in 3 s"), 3_000);
  try {
    const got = await t.read();
    how = `read: ${got === null ? "end" : `${got.length} bytes`}`;
  } catch (e) {
    refused = e instanceof TunnelResetError && e.code === DialCode.refused;
    how = `read: ${e}`;
  }
  clearTimeout(timer);
  await s.depart().catch(() => {});
  await m.close();
  console.log(JSON.stringify({ refused, how }));
}
