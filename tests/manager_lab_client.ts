/**
 * The workstation side of tests/manager_lab_test.ts, run inside the lab's workstation namespace:
 *   deno run -A tests/manager_lab_client.ts <scenario> <manager-url> <lab-config-json>
 * Prints one JSON line with what it measured; the test asserts on it.
 */
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { connect, DialCode, dialCodeName, type ManagerSession } from "../proto/mod.ts";
import type { LabConfig } from "../scripts/lab_config.ts";
import { seededBytes, sha256 } from "./manager_fixture.ts";

const [scenario, url, configJson] = Deno.args;
const lab = JSON.parse(configJson!) as LabConfig;
const echo = lab.services.find((s) => s.name === "echo")!;
const ECHO_PORT = echo.ports["tcp-echo"]!.port;

async function tcpEcho(s: ManagerSession, ip: string, bytes: number, seed: number) {
  const t = await s.openTunnel({
    protocol: "tcp",
    source: { ip: "10.9.0.1", port: 40000 + seed },
    destination: { ip, port: ECHO_PORT },
  });
  if (t.dial.code !== DialCode.ok) throw new Error(`dial ${dialCodeName(t.dial.code)}: ${t.dial.message}`);
  const data = seededBytes(bytes, seed);
  const writer = (async () => {
    for (let o = 0; o < data.length; o += 16384) {
      if (!t.write(data.subarray(o, Math.min(o + 16384, data.length)))) await t.drained();
    }
    t.closeWrite();
  })();
  const got: Uint8Array[] = [];
  for await (const c of t) got.push(c);
  await writer;
  const end = await t.ended;
  return { sent: await sha256([data]), received: await sha256(got), end: end.how };
}

async function udpEcho(s: ManagerSession, bytes: number) {
  const t = await s.openTunnel({
    protocol: "udp",
    source: { ip: "10.9.0.1", port: 5000 },
    destination: { ip: echo.serviceIp, port: echo.ports["udp-echo"]!.port },
  });
  const data = seededBytes(bytes, 99);
  const size = 8000;
  const window = 4; // 16 fragmented 8000-byte datagrams overflowed a default socket receive buffer
  const got: Uint8Array[] = [];
  let sentOff = 0;
  let inFlight = 0;
  while (sentOff < data.length || inFlight > 0) {
    while (inFlight < window && sentOff < data.length) {
      t.write(data.subarray(sentOff, Math.min(sentOff + size, data.length)));
      sentOff += size;
      inFlight++;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      t.read(),
      new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), 3000))),
    ]);
    clearTimeout(timer);
    if (r === "timeout" || r === null) throw new Error(`UDP echo stalled after ${got.length} datagrams`);
    got.push(new Uint8Array(r));
    inFlight--;
  }
  t.closeWrite();
  await t.ended;
  return { sent: await sha256([data]), received: await sha256(got), datagrams: got.length };
}

async function dial(s: ManagerSession) {
  const one = async (ip: string, port: number) => {
    const t0 = performance.now();
    const t = await s.openTunnel({ protocol: "tcp", source: { ip: "10.9.0.1", port: 1 }, destination: { ip, port } });
    const ms = performance.now() - t0;
    if (t.dial.code === DialCode.ok) t.reset();
    await t.ended;
    return { result: dialCodeName(t.dial.code), ms };
  };
  return {
    refused: await one(echo.podIp, lab.closedPort),
    timeout: await one(lab.silentIp, 80),
    denied: await one(lab.veth.workstationIp, 80),
    ok: await one(echo.serviceIp6, ECHO_PORT),
  };
}

async function dns(s: ManagerSession) {
  const d = lab.clusterDomain;
  const ask = async (name: string, type: dnsPacket.RecordType) => {
    const id = Math.floor(Math.random() * 65535);
    const q = dnsPacket.encode({
      type: "query",
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name, type, class: "IN" }],
    });
    const raw = await s.dns(new Uint8Array(q));
    const a = dnsPacket.decode(Buffer.from(raw));
    return {
      id: a.id === id,
      rcode: (a as { rcode?: string }).rcode ?? "",
      answers: (a.answers ?? []).map((x) => ({ type: x.type, data: JSON.stringify((x as { data?: unknown }).data) })),
    };
  };
  const rev = echo.serviceIp.split(".").reverse().join(".") + ".in-addr.arpa";
  return {
    a: await ask(`echo.default.svc.${d}`, "A"),
    aaaa: await ask(`echo.default.svc.${d}`, "AAAA"),
    srv: await ask(`_http._tcp.echo.default.svc.${d}`, "SRV"),
    ptr: await ask(rev, "PTR"),
    nx: await ask(`nothing-here.default.svc.${d}`, "A"),
  };
}

/**
 * `n` echo streams, 250 at a time: all at once, the echo server's listen backlog overflows and the kernel retries the
 * dropped SYNs after 1 s, past this test's 1 s dial timeout (the client spreads streams over several HTTP/2
 * connections, so they really are concurrent).
 */
async function many(s: ManagerSession, n: number) {
  let ok = 0;
  for (let b = 0; b < n; b += 250) {
    const results = await Promise.all(
      Array.from(
        { length: Math.min(250, n - b) },
        (_, i) => tcpEcho(s, (b + i) % 2 ? echo.serviceIp : echo.podIp, 4096, b + i + 1),
      ),
    );
    ok += results.filter((r) => r.sent === r.received && r.end === "closed").length;
  }
  return { streams: n, ok };
}

const session = await connect(url!, Deno.env.get("TP_TEST_TOKEN"), { clientName: `lab-${scenario}` });
let out: unknown;
try {
  switch (scenario) {
    case "tcp50":
      out = {
        service: await tcpEcho(session, echo.serviceIp, 50_000_000, 1),
        pod6: await tcpEcho(session, echo.podIp6, 5_000_000, 2),
      };
      break;
    case "udp50":
      out = await udpEcho(session, 50_000_000);
      break;
    case "dial":
      out = await dial(session);
      break;
    case "dns":
      out = await dns(session);
      break;
    case "many":
      out = await many(session, 1000);
      break;
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
} finally {
  await session.depart();
}
console.log(JSON.stringify(out));
