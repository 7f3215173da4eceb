/**
 * The traffic-agent (`tp agent`), a sidecar beside the app in each pod of an intercepted workload. It needs no
 * privileges: no iptables, no NET_ADMIN. The workload's Service points at the agent's ports, and the agent:
 *
 * - relays each connection to the app (127.0.0.1:APP_PORT) while its port is not intercepted;
 * - sends it through the manager to the intercepting workstation while it is (one AgentTunnel stream each, on the
 *   agent's one HTTP/2 connection);
 * - answers the DNS queries the manager sends it in the pod's own context (agent/dns.ts);
 * - keeps its registration alive, and registers again after the manager restarts or the connection breaks.
 *
 * The listeners start before the manager is reached, so the app is served whatever the manager does.
 */
import type net from "node:net";
import { connectAgent, DialCode, type ManagerSession, pipeSocket, type Tunnel } from "../proto/mod.ts";
import type { AgentArriveRequest } from "../proto/messages.ts";
import { VERSION } from "../base/version.ts";
import { type Forward, Forwarder, type Routed } from "./forward.ts";
import type { PodResolver } from "./dns.ts";
import { errorMessage } from "../base/error_message.ts";

export interface AgentSettings {
  managerUrl: string;
  token: string | undefined;
  namespace: string;
  workload: string;
  podName: string;
  podIp: string;
  forwards: Forward[];
  mounts: string[];
  /** The app container's environment, as the workstation will get it. */
  env: Record<string, string>;
}

export interface AgentEnv {
  signal: AbortSignal;
  log(line: string): void;
  /** The pod's resolver; made once the cluster domain is known (from the manager). */
  resolver(clusterDomain: string): PodResolver;
  /**
   * Serves one SFTP stream (a workstation mounting the pod's volumes); resolves when the stream ended. Absent: mounts
   * are refused.
   */
  sftp?: (stream: Tunnel) => Promise<void>;
  /** Why no mount can be served now (one line naming the fix), asked before a mount is accepted; undefined: none. */
  sftpProblem?: () => string | undefined;
  /** Called each time the agent registered with the manager (tests wait for it). */
  onRegistered?: (sessionId: string) => void;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 5000];

/** Runs the agent until `env.signal` aborts. Rejects only when a listener cannot start. */
export async function runAgent(settings: AgentSettings, env: AgentEnv): Promise<void> {
  const { log, signal } = env;
  let session: ManagerSession | undefined;
  let intercepted = new Set<number>();
  const forwarder = new Forwarder(settings.forwards, {
    intercepted: (port) => session !== undefined && intercepted.has(port),
    toWorkstation: (sock, port) => toWorkstation(session, settings, sock, port, log),
    log,
  });
  await forwarder.listen();
  log(
    `forwarding ${settings.forwards.map((f) => `${f.agentPort} -> 127.0.0.1:${f.appPort}`).join(", ")} for ` +
      `${settings.workload} in ${settings.namespace}`,
  );
  const arrive: AgentArriveRequest = {
    namespace: settings.namespace,
    workload: settings.workload,
    podName: settings.podName,
    podIp: settings.podIp,
    forwards: settings.forwards,
    mounts: settings.mounts,
    env: settings.env,
    agentVersion: VERSION,
  };
  try {
    for (let attempt = 0; !signal.aborted; attempt++) {
      let lostWhy = "";
      const lost = new Promise<void>((resolve) => {
        const s = connectAgent(settings.managerUrl, settings.token, arrive, {
          clientName: `${settings.workload}/${settings.podName}`,
          signal,
          onLost: (e) => {
            lostWhy = e.message;
            resolve();
          },
        });
        s.then((ok) => {
          session = ok;
          attempt = 0;
          log(`registered with the traffic-manager at ${settings.managerUrl}: session ${ok.id.slice(0, 8)}`);
          env.onRegistered?.(ok.id);
          void follow(ok, env, (ports) => {
            intercepted = ports;
          }).catch((e) => log(`watch ended: ${errorMessage(e)}`)).finally(resolve);
        }, (e) => {
          lostWhy = errorMessage(e);
          resolve();
        });
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      await lost;
      const was = session;
      session = undefined;
      intercepted = new Set();
      if (signal.aborted) {
        await was?.depart();
        break;
      }
      await was?.close();
      const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!;
      log(`not registered with the traffic-manager (${lostWhy || "connection closed"}); retrying in ${wait} ms`);
      await sleep(wait, signal);
    }
  } finally {
    await forwarder.close();
  }
}

/** Follows the manager's events for this agent until the session ends. */
async function follow(s: ManagerSession, env: AgentEnv, setPorts: (p: Set<number>) => void): Promise<void> {
  let resolver: PodResolver | undefined;
  for await (const ev of s.watchAgent()) {
    if (ev.intercepts) {
      setPorts(new Set(ev.intercepts.appPorts));
      env.log(`intercepted ports: ${ev.intercepts.appPorts.join(", ") || "(none)"}`);
    } else if (ev.sftp) {
      const { connectionId } = ev.sftp;
      if (!env.sftp) {
        s.joinMount(connectionId, { code: DialCode.denied, message: "this agent serves no volumes" }).reset();
        continue;
      }
      const problem = env.sftpProblem?.();
      if (problem) {
        env.log(`a workstation's mount refused: ${problem}`);
        s.joinMount(connectionId, { code: DialCode.refused, message: problem }).reset(problem);
        continue;
      }
      const t = s.joinMount(connectionId, { code: DialCode.ok, message: "" });
      env.log("a workstation mounts the pod's volumes");
      void env.sftp(t).catch((e) => env.log(`sftp: ${errorMessage(e)}`));
    } else if (ev.dnsQuery) {
      resolver ??= env.resolver(s.clusterInfo.clusterDomain || "cluster.local");
      const { id, query } = ev.dnsQuery;
      void resolver.answer(query)
        .catch(() => new Uint8Array())
        .then((answer) => s.agentDnsAnswer(id, answer))
        .catch((e) => env.log(`DNS answer ${id}: ${errorMessage(e)}`));
    }
  }
}

/** One intercepted connection: a tunnel through the manager, which the workstation joins. */
async function toWorkstation(
  session: ManagerSession | undefined,
  settings: AgentSettings,
  sock: net.Socket,
  appPort: number,
  log: (line: string) => void,
): Promise<Routed> {
  if (!session) return "to-app";
  let t;
  try {
    t = await session.openTunnel({
      protocol: "tcp",
      source: { ip: sock.remoteAddress ?? "", port: sock.remotePort ?? 0 },
      destination: { ip: settings.podIp, port: appPort },
    }, { method: "AgentTunnel" });
  } catch (e) {
    log(`cannot send a connection to the workstation: ${errorMessage(e)}`);
    sock.resetAndDestroy();
    return "handled";
  }
  if (t.dial.code === DialCode.denied) return "to-app"; // the intercept ended a moment ago
  if (t.dial.code !== DialCode.ok) {
    sock.resetAndDestroy();
    return "handled";
  }
  const piped = pipeSocket(sock, t);
  sock.resume();
  await piped;
  return "handled";
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
