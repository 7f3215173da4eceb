/**
 * `scripts/lab up | down | status [-o json] | exec NODE CMD...`: the lab cluster (see lab_config.ts).
 *
 * `up` is idempotent: a healthy lab is left as it is; anything else (a half-done `up`, a crash) is torn down first.
 * `down` removes every namespace, link, file and process the lab made, and is safe to run at any time.
 * The lab is test infrastructure: it uses iproute2 and dnsmasq from the shell, which tp itself never does.
 */
import { type LabConfig, labConfig } from "./lab_config.ts";
import { pidAlive } from "../cli/process.ts";

const scriptsDir = new URL(".", import.meta.url).pathname;
const denoBin = Deno.execPath();

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string[], opts: { stdin?: string; check?: boolean } = {}): Promise<RunResult> {
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const res = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (opts.check !== false && res.code !== 0) {
    throw new Error(`lab: "${cmd.join(" ")}" failed (exit ${res.code}): ${res.stderr.trim()}`);
  }
  return res;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function namespaces(): Promise<string[]> {
  const r = await run(["ip", "-j", "netns", "list"], { check: false });
  if (r.code !== 0 || !r.stdout.trim()) return [];
  return (JSON.parse(r.stdout) as { name: string }[]).map((n) => n.name);
}

async function readPid(path: string): Promise<number | null> {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

const PIDFILES = ["cluster-dns.pid", "ws-dns.pid", "services.pid", "iperf.pid"] as const;

/** What is running and present of the lab, component by component. */
export async function health(cfg: LabConfig): Promise<Record<string, boolean>> {
  const ns = await namespaces();
  const h: Record<string, boolean> = {
    workstationNamespace: ns.includes(cfg.namespaces.workstation),
    clusterNamespace: ns.includes(cfg.namespaces.cluster),
  };
  for (const f of PIDFILES) {
    const pid = await readPid(`${cfg.stateDir}/${f}`);
    h[f.replace(".pid", "")] = pid !== null && pidAlive(pid);
  }
  h.workstationResolvConf = await exists(`/etc/netns/${cfg.namespaces.workstation}/resolv.conf`);
  return h;
}

function dnsmasqClusterConf(cfg: LabConfig): string {
  const d = cfg.clusterDomain;
  const lines = [
    `listen-address=${cfg.clusterDns.ip}`,
    `port=${cfg.clusterDns.port}`,
    "bind-interfaces",
    "no-resolv",
    "no-hosts",
    "no-poll",
    "log-queries",
    `log-facility=${cfg.stateDir}/cluster-dns.log`,
    // CoreDNS's kubernetes plugin answers with a TTL of 5 s by default; dnsmasq's own records would have 0.
    "local-ttl=5",
    "user=root",
    `local=/${d}/`,
    "local=/19.198.in-addr.arpa/",
    "local=/5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa/",
    "local=/6.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa/",
    `host-record=kube-dns.kube-system.svc.${d},${cfg.clusterDns.ip}`,
  ];
  for (const s of cfg.services) {
    const fqdn = `${s.name}.${s.namespace}.svc.${d}`;
    lines.push(`host-record=${fqdn},${s.serviceIp},${s.serviceIp6}`);
    const podName = `${s.podIp.replaceAll(".", "-")}.${s.namespace}.pod.${d}`;
    lines.push(`host-record=${podName},${s.podIp},${s.podIp6}`);
    for (const [portName, p] of Object.entries(s.ports)) {
      const srvName = portName === "http" ? "http" : portName;
      lines.push(`srv-host=_${srvName}._${p.protocol}.${fqdn},${fqdn},${p.port},0,100`);
    }
    lines.push(`txt-record=${fqdn},"service=${s.name}"`);
  }
  return lines.join("\n") + "\n";
}

function dnsmasqWorkstationConf(cfg: LabConfig): string {
  const w = cfg.workstationDns;
  return [
    `listen-address=${w.ip}`,
    `port=${w.port}`,
    "bind-interfaces",
    "no-resolv",
    "no-hosts",
    "no-poll",
    "log-queries",
    `log-facility=${cfg.stateDir}/ws-dns.log`,
    "local-ttl=60",
    "user=root",
    `local=/${w.searchDomain}/`,
    `host-record=${w.hostName},${w.hostIp}`,
  ].join("\n") + "\n";
}

/** Starts a command in a namespace, detached, its output in a log file; returns its pid. */
async function startDetached(ns: string, cmd: string[], log: string): Promise<number> {
  const quoted = cmd.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const r = await run(["sh", "-c", `setsid ip netns exec ${ns} ${quoted} >'${log}' 2>&1 </dev/null & echo $!`]);
  return Number(r.stdout.trim());
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`lab: ${what} did not become ready within ${timeoutMs} ms`);
}

/**
 * The cluster namespace lets every group open unprivileged ICMP sockets, as container runtimes do for pods: the
 * manager sends `ping`'s echoes through them. The setting is the namespace's own (net.ipv4.ping_group_range is per
 * network namespace), so the machine's is untouched.
 */
async function allowPing(cfg: LabConfig): Promise<void> {
  await run(["ip", "netns", "exec", cfg.namespaces.cluster, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]);
}

export async function up(cfg: LabConfig, log: (s: string) => void = () => {}): Promise<void> {
  const h = await health(cfg);
  if (Object.values(h).every(Boolean)) {
    await allowPing(cfg);
    log(`lab ${cfg.id} is already up`);
    return;
  }
  if (Object.values(h).some(Boolean) || await exists(cfg.stateDir)) {
    log(`lab ${cfg.id} is partly up; tearing it down first`);
    await down(cfg);
  }
  const { workstation: ws, cluster: cl } = cfg.namespaces;
  await Deno.mkdir(cfg.stateDir, { recursive: true });
  await run(["ip", "netns", "add", ws]);
  await run(["ip", "netns", "add", cl]);
  await run([
    "ip",
    "link",
    "add",
    cfg.links.workstation,
    "netns",
    ws,
    "type",
    "veth",
    "peer",
    "name",
    cfg.links.cluster,
    "netns",
    cl,
  ]);
  const p = cfg.veth.prefixLength;
  await run(["ip", "-n", ws, "-batch", "-"], {
    stdin: [
      "link set lo up",
      `addr add ${cfg.workstationDns.ip}/32 dev lo`,
      `addr add ${cfg.veth.workstationIp}/${p} dev ${cfg.links.workstation}`,
      `link set ${cfg.links.workstation} up`,
    ].join("\n") + "\n",
  });
  const clusterCmds = [
    "link set lo up",
    `addr add ${cfg.veth.clusterIp}/${p} dev ${cfg.links.cluster}`,
    `link set ${cfg.links.cluster} up`,
    `addr add ${cfg.clusterDns.ip}/32 dev lo`,
    // The silent next hop: a neighbour entry that no host answers for, so dials through it time out.
    `neigh add ${cfg.veth.silentNextHop} lladdr 02:00:00:00:00:06 dev ${cfg.links.cluster} nud permanent`,
    `route add ${cfg.silentIp}/32 via ${cfg.veth.silentNextHop} dev ${cfg.links.cluster}`,
  ];
  for (const s of cfg.services) {
    clusterCmds.push(`addr add ${s.serviceIp}/32 dev lo`, `addr add ${s.podIp}/32 dev lo`);
    clusterCmds.push(`addr add ${s.serviceIp6}/128 dev lo nodad`, `addr add ${s.podIp6}/128 dev lo nodad`);
  }
  await run(["ip", "-n", cl, "-batch", "-"], { stdin: clusterCmds.join("\n") + "\n" });
  await allowPing(cfg);

  // resolv.conf for each namespace: `ip netns exec` bind-mounts these over /etc/resolv.conf.
  for (
    const [ns, text] of [
      [ws, `nameserver ${cfg.workstationDns.ip}\nsearch ${cfg.workstationDns.searchDomain}\n`],
      [
        cl,
        `nameserver ${cfg.clusterDns.ip}\nsearch default.svc.${cfg.clusterDomain} svc.${cfg.clusterDomain} ${cfg.clusterDomain}\noptions ndots:5\n`,
      ],
    ] as const
  ) {
    await Deno.mkdir(`/etc/netns/${ns}`, { recursive: true });
    await Deno.writeTextFile(`/etc/netns/${ns}/resolv.conf`, text);
  }

  const sd = cfg.stateDir;
  await Deno.writeTextFile(`${sd}/cluster-dns.conf`, dnsmasqClusterConf(cfg));
  await Deno.writeTextFile(`${sd}/ws-dns.conf`, dnsmasqWorkstationConf(cfg));
  // dnsmasq daemonizes after binding its sockets and writing its pid file.
  await run([
    "ip",
    "netns",
    "exec",
    cl,
    "dnsmasq",
    `--conf-file=${sd}/cluster-dns.conf`,
    `--pid-file=${sd}/cluster-dns.pid`,
  ]);
  await run(["ip", "netns", "exec", ws, "dnsmasq", `--conf-file=${sd}/ws-dns.conf`, `--pid-file=${sd}/ws-dns.pid`]);
  const echo = cfg.services[0]!;
  const svcPid = await startDetached(cl, [
    denoBin,
    "run",
    "--allow-all",
    `${scriptsDir}lab_services.ts`,
    `--http-port=${echo.ports["http"]!.port}`,
    `--tcp-port=${echo.ports["tcp-echo"]!.port}`,
    `--udp-port=${echo.ports["udp-echo"]!.port}`,
    `--udp-addresses=${[echo.serviceIp, echo.podIp, echo.serviceIp6, echo.podIp6].join(",")}`,
    `--ready-file=${sd}/services.ready`,
  ], `${sd}/services.log`);
  await Deno.writeTextFile(`${sd}/services.pid`, `${svcPid}\n`);
  const iperf = cfg.services.find((s) => s.name === "iperf")!;
  await run([
    "ip",
    "netns",
    "exec",
    cl,
    "iperf3",
    "--server",
    "--daemon",
    "--port",
    String(iperf.ports["iperf"]!.port),
    "--pidfile",
    `${sd}/iperf.pid`,
    "--logfile",
    `${sd}/iperf.log`,
  ]);
  await waitFor("the echo services", () => exists(`${sd}/services.ready`), 10000);
  await waitFor("iperf3", () => exists(`${sd}/iperf.pid`));
  log(`lab ${cfg.id} is up`);
}

async function killWait(pid: number): Promise<void> {
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 50 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  try {
    Deno.kill(pid, "SIGKILL");
  } catch { /* gone */ }
}

export async function down(cfg: LabConfig, log: (s: string) => void = () => {}): Promise<void> {
  for (const f of PIDFILES) {
    const pid = await readPid(`${cfg.stateDir}/${f}`);
    if (pid !== null) await killWait(pid);
  }
  const present = await namespaces();
  for (const ns of [cfg.namespaces.workstation, cfg.namespaces.cluster]) {
    if (!present.includes(ns)) continue;
    // Anything still running in the namespace (a test's manager, a stray client) ends with it.
    const pids = (await run(["ip", "netns", "pids", ns], { check: false })).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids.map(Number)) await killWait(pid);
    await run(["ip", "netns", "del", ns], { check: false });
  }
  for (
    const path of [cfg.stateDir, `/etc/netns/${cfg.namespaces.workstation}`, `/etc/netns/${cfg.namespaces.cluster}`]
  ) {
    await Deno.remove(path, { recursive: true }).catch(() => {});
  }
  log(`lab ${cfg.id} is down`);
}

export async function status(cfg: LabConfig): Promise<LabConfig & { up: boolean; health: Record<string, boolean> }> {
  const h = await health(cfg);
  return { ...cfg, up: Object.values(h).every(Boolean), health: h };
}

function usage(): never {
  console.error(
    "usage: scripts/lab up | down | status [-o json] | exec NODE CMD...\n" +
      "  NODE is ws (the workstation) or cluster. TP_LAB_ID selects the lab (default tp).",
  );
  Deno.exit(2);
}

if (import.meta.main) {
  const [cmd, ...rest] = Deno.args;
  const cfg = labConfig();
  const say = (s: string) => console.error(s);
  try {
    switch (cmd) {
      case "up": {
        const t0 = performance.now();
        await up(cfg, say);
        say(`(${Math.round(performance.now() - t0)} ms)`);
        break;
      }
      case "down":
        await down(cfg, say);
        break;
      case "status": {
        const json = rest.join(" ") === "-o json" || rest.join(" ") === "--output json" || rest[0] === "-ojson";
        if (rest.length && !json) usage();
        const s = await status(cfg);
        if (json) console.log(JSON.stringify(s, null, 2));
        else {
          console.log(`lab ${cfg.id}: ${s.up ? "up" : "down"}`);
          for (const [k, v] of Object.entries(s.health)) console.log(`  ${v ? "ok  " : "MISSING"} ${k}`);
          if (s.up) {
            console.log(
              `  workstation ${cfg.namespaces.workstation} ${cfg.veth.workstationIp}, cluster ${cfg.namespaces.cluster} ${cfg.veth.clusterIp}`,
            );
            console.log(`  subnets: service ${cfg.subnets.service.join(" ")}; pod ${cfg.subnets.pod.join(" ")}`);
            console.log(
              `  cluster DNS ${cfg.clusterDns.ip} (${cfg.clusterDomain}); workstation DNS ${cfg.workstationDns.ip}`,
            );
            for (const svc of cfg.services) {
              const ports = Object.entries(svc.ports).map(([n, p]) => `${n} ${p.port}/${p.protocol}`).join(", ");
              console.log(
                `  ${svc.name}.${svc.namespace}: service ${svc.serviceIp} ${svc.serviceIp6}, pod ${svc.podIp} ${svc.podIp6}: ${ports}`,
              );
            }
          }
        }
        Deno.exit(s.up ? 0 : 1);
        break;
      }
      case "exec": {
        const [node, ...argv] = rest;
        const ns = node === "ws" || node === "workstation"
          ? cfg.namespaces.workstation
          : node === "cluster"
          ? cfg.namespaces.cluster
          : usage();
        if (argv.length === 0) usage();
        const child = new Deno.Command("ip", { args: ["netns", "exec", ns, ...argv], stdin: "inherit" }).spawn();
        Deno.exit((await child.status).code);
        break;
      }
      default:
        usage();
    }
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    Deno.exit(1);
  }
}
