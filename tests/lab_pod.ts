/**
 * A pod for the lab: a network namespace of its own (`<lab>-pod-<name>`) on the lab's pod subnet, joined to the
 * cluster namespace by a veth pair (the only path in or out, as a pod's interface is), with its own resolv.conf and
 * hosts file (a name only it knows, as a pod's hostAliases give), running the app (scripts/lab_services.ts: HTTP
 * echo, TCP echo, UDP echo) and, when asked, `tp agent` beside it. Tests start a pod, use it, and stop it: every
 * process and namespace goes with `stop()`.
 *
 * Addresses: pod n has the pod IP given, and the link 198.18.1.(4n+1) (cluster side) / 198.18.1.(4n+2) (pod side),
 * /30; the cluster namespace routes the pod IP to the link.
 */
import { exec, type ExecOptions, type ExecResult, inNs, LAB, ROOT } from "./lab.ts";
import { type ClusterProcess, spawnInNs as spawnIn, TP } from "./connect_fixture.ts";

export interface PodSpec {
  /** Short, [a-z0-9]{1,6}: names the namespace and the link. */
  name: string;
  index: number;
  podIp: string;
  /** The app's ports, on 127.0.0.1 and the pod IP. */
  httpPort: number;
  tcpPort: number;
  /** `hosts` lines only this pod knows, e.g. "198.19.128.77 legacy-db". */
  hosts?: string[];
  /** The app's environment (what `tp intercept -- CMD` should see). */
  env?: Record<string, string>;
  /** What the app calls itself in its answers (default `name`). */
  appName?: string;
}

export interface LabPod {
  spec: PodSpec;
  netns: string;
  run(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts `tp agent` in the pod with these forwards ("AGENT:APP") and waits until it registered. */
  startAgent(
    args: { managerUrl: string; workload: string; forwards: string[]; token?: string; extra?: string[] },
  ): Promise<ClusterProcess>;
  /**
   * Starts `tp agent` configured by its environment alone (TP_AGENT_* and the app's variables), as the container
   * injection adds runs, and waits until it registered.
   */
  startAgentWithEnv(env: Record<string, string>): Promise<ClusterProcess>;
  stop(): Promise<void>;
}

const podNs = (name: string) => `${LAB.id}-pod-${name}`;

async function sh(cmd: string[]): Promise<void> {
  const r = await exec(cmd, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`"${cmd.join(" ")}" failed (${r.code}): ${r.stderr.trim()}`);
}

/** Removes a pod's namespace, link and files (whatever of them exists). */
export async function removePod(name: string): Promise<void> {
  const ns = podNs(name);
  await exec(["ip", "netns", "pids", ns]).then((r) => {
    for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
  });
  await exec(["ip", "netns", "del", ns]);
  await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
}

/** Makes the pod's namespace and link, writes its resolv.conf and hosts, and starts its app. */
export async function startPod(spec: PodSpec): Promise<LabPod> {
  const ns = podNs(spec.name);
  await removePod(spec.name);
  const cl = LAB.namespaces.cluster;
  const hostSide = `${LAB.id}-pod${spec.index}`;
  const a = `198.18.1.${4 * spec.index + 1}`, b = `198.18.1.${4 * spec.index + 2}`;
  await Deno.mkdir(`/etc/netns/${ns}`, { recursive: true });
  // The pod's resolver: the cluster DNS, Kubernetes' search list; the hosts file holds what only this pod knows.
  await Deno.writeTextFile(
    `/etc/netns/${ns}/resolv.conf`,
    `nameserver ${LAB.clusterDns.ip}\nsearch default.svc.${LAB.clusterDomain} svc.${LAB.clusterDomain} ` +
      `${LAB.clusterDomain}\noptions ndots:5\n`,
  );
  await Deno.writeTextFile(
    `/etc/netns/${ns}/hosts`,
    `127.0.0.1 localhost\n${spec.podIp} ${spec.name}\n${(spec.hosts ?? []).join("\n")}\n`,
  );
  await sh(["ip", "netns", "add", ns]);
  await sh(["ip", "-n", cl, "link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  await sh(["ip", "-n", cl, "addr", "add", `${a}/30`, "dev", hostSide]);
  await sh(["ip", "-n", cl, "link", "set", hostSide, "up"]);
  await sh(["ip", "-n", cl, "route", "add", `${spec.podIp}/32`, "via", b]);
  await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  await sh(["ip", "-n", ns, "addr", "add", `${b}/30`, "dev", "eth0"]);
  await sh(["ip", "-n", ns, "addr", "add", `${spec.podIp}/32`, "dev", "eth0"]);
  await sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
  await sh(["ip", "-n", ns, "route", "add", "default", "via", a, "src", spec.podIp]);

  const procs: ClusterProcess[] = [];
  const ready = await Deno.makeTempFile({ prefix: "tp-pod-ready-" });
  await Deno.remove(ready);
  const app = spawnIn(ns, [
    Deno.execPath(),
    "run",
    "-A",
    `${ROOT}/scripts/lab_services.ts`,
    `--http-port=${spec.httpPort}`,
    `--tcp-port=${spec.tcpPort}`,
    `--udp-port=${spec.tcpPort}`,
    `--udp-addresses=${spec.podIp}`,
    `--ready-file=${ready}`,
    `--name=${spec.appName ?? spec.name}`,
  ], { env: spec.env ?? {} });
  procs.push(app);
  for (let i = 0; i < 200; i++) {
    if (await Deno.stat(ready).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await Deno.remove(ready).catch(() => {
    throw new Error(`the pod's app did not start within 10 s:\n${app.log()}`);
  });

  const registered = async (agent: ReturnType<typeof spawnIn>) => {
    procs.push(agent);
    for (let i = 0; i < 300; i++) {
      if (agent.log().includes("registered with the traffic-manager")) return agent;
      if (agent.exited()) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`tp agent did not register within 15 s:\n${agent.log()}`);
  };
  return {
    spec,
    netns: ns,
    run: (cmd, opts = {}) => exec(["ip", "netns", "exec", ns, ...cmd], opts),
    startAgent(o) {
      const args = [TP, "agent", "--manager-url", o.managerUrl, "--namespace", "default", "--workload", o.workload];
      args.push("--pod-name", `${o.workload}-0`, "--pod-ip", spec.podIp);
      for (const f of o.forwards) args.push("--forward", f);
      if (o.token) args.push("--token", o.token);
      args.push(...(o.extra ?? []));
      return registered(spawnIn(ns, args, { env: spec.env ?? {} }));
    },
    startAgentWithEnv: (env) => registered(spawnIn(ns, [TP, "agent"], { env })),
    async stop() {
      for (const p of procs.reverse()) await p.stop();
      await removePod(spec.name);
      await exec(["ip", "-n", cl, "link", "del", hostSide]);
    },
  };
}

/**
 * GET / from the cluster namespace to a pod's port: which app answered (its `--name`: the pod's own, or "laptop", the
 * workstation's stand-in), or why the request failed.
 */
export async function whoAnswers(podIp: string, port: number, timeoutS = 10): Promise<string> {
  const r = await inNs("cluster", ["curl", "-sS", "-m", String(timeoutS), `http://${podIp}:${port}/`]);
  if (r.code !== 0) return `curl failed (${r.code}): ${r.stderr.trim()}`;
  return (JSON.parse(r.stdout) as { service: string }).service;
}

/** Waits until `f` says true: checked every 100 ms, at most 300 times and for `ms`; throws naming `what` after. */
export async function waitFor(what: string, f: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  for (let i = 0; i < 300 && Date.now() - t0 < ms; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
