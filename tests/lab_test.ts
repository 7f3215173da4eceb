/** The lab cluster (scripts/lab): what issue 2 promises later tests can rely on. Needs root. */
import assert from "node:assert/strict";
import { ensureLab, exec, inNs, LAB, labConfig, labService, ROOT } from "./lab.ts";

const echo = labService(LAB, "echo");
const iperf = labService(LAB, "iperf");
const http = echo.ports["http"]!.port;
const tcpEcho = echo.ports["tcp-echo"]!.port;
const udpEcho = echo.ports["udp-echo"]!.port;
const bracket = (ip: string) => ip.includes(":") ? `[${ip}]` : ip;
const echoIps = [echo.serviceIp, echo.podIp, echo.serviceIp6, echo.podIp6];

Deno.test("the workstation has no route to the cluster's service and pod IPs", async () => {
  await ensureLab();
  for (const ip of echoIps) {
    const r = await inNs("ws", ["curl", "-sS", "-m", "3", `http://${bracket(ip)}:${http}/`]);
    assert.notEqual(r.code, 0, `curl to ${ip} from the workstation should fail, got: ${r.stdout}`);
    assert.ok(r.ms < 2500, `curl to ${ip} should fail at once (no route), took ${r.ms} ms`);
  }
});

Deno.test("inside the cluster the HTTP echo answers on its service IP and pod IP, IPv4 and IPv6", async () => {
  await ensureLab();
  for (const ip of echoIps) {
    const r = await inNs("cluster", ["curl", "-sS", "-m", "5", `http://${bracket(ip)}:${http}/hello?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout);
    assert.equal(body.service, "echo");
    assert.equal(body.path, "/hello?x=1");
    assert.equal(body.method, "GET");
    assert.ok(typeof body.client.address === "string" && body.client.address.length > 0);
  }
});

Deno.test("inside the cluster the TCP and UDP echoes answer on the service IP and pod IP", async () => {
  await ensureLab();
  for (const ip of echoIps) {
    const line = `ping ${ip} ${crypto.randomUUID()}\n`;
    const tcp = await inNs("cluster", ["socat", "-t", "2", "-", `TCP:${bracket(ip)}:${tcpEcho}`], { stdin: line });
    assert.equal(tcp.code, 0, tcp.stderr);
    assert.equal(tcp.stdout, line);
    const udp = await inNs("cluster", ["socat", "-t", "0.3", "-", `UDP:${bracket(ip)}:${udpEcho}`], { stdin: line });
    assert.equal(udp.code, 0, udp.stderr);
    assert.equal(udp.stdout, line);
  }
});

Deno.test("inside the cluster iperf3 answers on its service IP and pod IP", async () => {
  await ensureLab();
  for (const ip of [iperf.serviceIp, iperf.podIp]) {
    const r = await inNs("cluster", ["iperf3", "-c", ip, "-p", String(iperf.ports["iperf"]!.port), "-n", "4M", "-J"], {
      timeoutMs: 20_000,
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const end = JSON.parse(r.stdout).end;
    assert.ok(end.sum_sent.bytes >= 4 * 1024 * 1024, `iperf3 sent ${end.sum_sent.bytes} bytes`);
    // The server's count can miss the last few ms of so short a test; that it reports bytes is what matters here.
    assert.ok(end.sum_received.bytes > 0, `iperf3's server received ${end.sum_received.bytes} bytes`);
  }
});

async function dig(node: "ws" | "cluster", args: string[]): Promise<string> {
  const r = await inNs(node, ["dig", "+time=2", "+tries=1", ...args]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  return r.stdout;
}

Deno.test("the cluster DNS answers A, AAAA, SRV, PTR and NXDOMAIN", async () => {
  await ensureLab();
  const at = `@${LAB.clusterDns.ip}`;
  const fqdn = "echo.default.svc.cluster.local";
  assert.equal((await dig("cluster", [at, "+short", fqdn, "A"])).trim(), echo.serviceIp);
  assert.equal((await dig("cluster", [at, "+short", fqdn, "AAAA"])).trim(), echo.serviceIp6);
  assert.equal(
    (await dig("cluster", [at, "+short", `_http._tcp.${fqdn}`, "SRV"])).trim(),
    `0 100 ${http} ${fqdn}.`,
  );
  assert.equal((await dig("cluster", [at, "+short", "-x", echo.serviceIp])).trim(), `${fqdn}.`);
  assert.match(await dig("cluster", [at, "no-such-svc.default.svc.cluster.local", "A"]), /status: NXDOMAIN/);
  // The namespace's own resolv.conf points at the cluster DNS, as a pod's would.
  assert.equal((await dig("cluster", ["+short", fqdn])).trim(), echo.serviceIp);
});

Deno.test("the workstation's own resolver answers its own name through the namespace's resolv.conf", async () => {
  await ensureLab();
  const w = LAB.workstationDns;
  assert.equal((await dig("ws", ["+short", w.hostName])).trim(), w.hostIp);
  const g = await inNs("ws", ["getent", "hosts", w.hostName]);
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, new RegExp(`^${w.hostIp.replaceAll(".", "\\.")}\\s+${w.hostName}`));
  // The workstation knows nothing of the cluster's names.
  assert.match(await dig("ws", ["echo.default.svc.cluster.local"]), /status: (NXDOMAIN|REFUSED|SERVFAIL)/);
});

Deno.test("scripts/lab status -o json prints the addresses, names and ports tests need", async () => {
  await ensureLab();
  const r = await exec([`${ROOT}/scripts/lab`, "status", "-o", "json"]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.up, true);
  assert.equal(s.namespaces.workstation, LAB.namespaces.workstation);
  assert.deepEqual(s.subnets, LAB.subnets);
  assert.equal(s.services[0].serviceIp, echo.serviceIp);
  assert.equal(s.clusterDns.ip, LAB.clusterDns.ip);
});

async function leftovers(id: string): Promise<string[]> {
  const cfg = labConfig(id);
  const found: string[] = [];
  const ns = (await exec(["ip", "netns", "list"])).stdout;
  for (const n of Object.values(cfg.namespaces)) if (ns.includes(n)) found.push(`namespace ${n}`);
  const links = (await exec(["ip", "-o", "link"])).stdout;
  for (const l of Object.values(cfg.links)) if (links.includes(l)) found.push(`link ${l}`);
  for (const p of [cfg.stateDir, ...Object.values(cfg.namespaces).map((n) => `/etc/netns/${n}`)]) {
    if (await Deno.stat(p).then(() => true, () => false)) found.push(`file ${p}`);
  }
  const ps = (await exec(["ps", "-eo", "pid,args"])).stdout.split("\n");
  for (const line of ps) if (line.includes(cfg.stateDir)) found.push(`process ${line.trim()}`);
  return found;
}

Deno.test("lab up is fast and idempotent, and lab down leaves no namespace, link, file or process", async () => {
  const id = "tpdown";
  const env = { ...Deno.env.toObject(), TP_LAB_ID: id };
  const lab = `${ROOT}/scripts/lab`;
  try {
    const first = await exec([lab, "up"], { env });
    assert.equal(first.code, 0, first.stderr);
    assert.ok(first.ms < 3000, `lab up took ${Math.round(first.ms)} ms`);
    const again = await exec([lab, "up"], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /already up/);
    const st = await exec([lab, "status", "-o", "json"], { env });
    assert.equal(JSON.parse(st.stdout).up, true);
    const down = await exec([lab, "down"], { env });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await leftovers(id), []);
    const st2 = await exec([lab, "status"], { env });
    assert.equal(st2.code, 1, "status of a lab that is down exits 1");
  } finally {
    await exec([lab, "down"], { env });
  }
});

Deno.test("lab up repairs a half-done lab, and lab down cleans one", async () => {
  const id = "tphalf";
  const cfg = labConfig(id);
  const env = { ...Deno.env.toObject(), TP_LAB_ID: id };
  const lab = `${ROOT}/scripts/lab`;
  try {
    // A crash during `up`: one namespace and the state directory, nothing else.
    await exec(["ip", "netns", "add", cfg.namespaces.workstation]);
    await Deno.mkdir(cfg.stateDir, { recursive: true });
    const r = await exec([lab, "up"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /partly up/);
    assert.equal((await exec([lab, "status"], { env })).code, 0);
    const d = await exec([lab, "down"], { env });
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(await leftovers(id), []);
    // down on a lab that is not there is fine too.
    assert.equal((await exec([lab, "down"], { env })).code, 0);
  } finally {
    await exec([lab, "down"], { env });
  }
});
