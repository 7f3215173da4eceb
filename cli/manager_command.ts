import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import {
  canonicalCidr,
  DEFAULTS,
  firstNameserver,
  formatHostPort,
  type HostPort,
  type ManagerConfig,
  parseDuration,
  parseHostPort,
  parseSize,
} from "../manager/config.ts";
import { jsonLogger, LOG_LEVELS, type LogLevel } from "../manager/log.ts";
import type { ClusterNetwork } from "../manager/k8s_discovery.ts";
import { Manager } from "../manager/server.ts";
import { serveManager } from "../manager/listen.ts";
import { guardProcess } from "../manager/listen.ts";
import type { AgentAuth } from "../manager/agent_auth.ts";
import { errorMessage } from "../base/error_message.ts";

/** Wraps a parser so its error reads as a usage error naming the flag. */
function arg<T>(parse: (s: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (e) {
      throw new InvalidArgumentError(errorMessage(e));
    }
  };
}

/** A size above zero. */
function positiveSize(text: string): number {
  const n = parseSize(text);
  if (n < 1) throw new RangeError(`Size "${text}" must be above zero`);
  return n;
}

/** A repeatable flag; its environment variable holds a comma-separated list. */
function list(parse: (s: string) => string) {
  return (value: string, previous: string[] | undefined): string[] => [
    ...(previous ?? []),
    ...value.split(",").map((v) => v.trim()).filter((v) => v !== "").map(arg(parse)),
  ];
}

function opt(flags: string, description: string, env: string) {
  return new Option(flags, description).env(env);
}

/**
 * `tp manager`: the traffic-manager, run in the cluster. Every flag also reads from an environment variable
 * (TP_MANAGER_LISTEN and so on), which is how a Deployment usually sets them.
 */
export function managerCommand() {
  return new Command("manager")
    .description(
      "Run the traffic-manager (in the cluster): it accepts tp's one HTTP/2 connection, dials the connections tp " +
        "carries, answers DNS through the cluster's DNS server, and serves /metrics.",
    )
    .addOption(
      opt("--listen <host:port>", "address to serve on", "TP_MANAGER_LISTEN").default(DEFAULTS.listen)
        .argParser(arg((s) => formatHostPort(parseHostPort(s)))),
    )
    .addOption(
      opt("--pod-cidr <cidr>", "a pod subnet (repeatable, IPv4 and IPv6)", "TP_MANAGER_POD_CIDR").argParser(
        list(canonicalCidr),
      ),
    )
    .addOption(
      opt("--service-cidr <cidr>", "a service subnet (repeatable, IPv4 and IPv6)", "TP_MANAGER_SERVICE_CIDR").argParser(
        list(canonicalCidr),
      ),
    )
    .addOption(
      opt(
        "--dns-server <ip[:port]>",
        "DNS server to forward to (default: first nameserver in /etc/resolv.conf)",
        "TP_MANAGER_DNS_SERVER",
      )
        .argParser(arg((s) => formatHostPort(parseHostPort(s, 53)))),
    )
    .addOption(
      opt("--cluster-domain <name>", "the cluster's DNS domain", "TP_MANAGER_CLUSTER_DOMAIN").default(
        DEFAULTS.clusterDomain,
      ),
    )
    .addOption(
      opt(
        "--allow <cidr>",
        "a destination the manager may dial (repeatable; default: the pod and service subnets and the DNS server)",
        "TP_MANAGER_ALLOW",
      ).argParser(list(canonicalCidr)),
    )
    .addOption(
      opt(
        "--agent-listen <host:port>",
        "also serve the traffic-agents' port here: only the agents' methods, each agent admitted by its workload's " +
          "credential (the Secret tp-agent-<workload>, read through the Kubernetes API) or by --token",
        "TP_MANAGER_AGENT_LISTEN",
      ).argParser(arg((s) => formatHostPort(parseHostPort(s)))),
    )
    .addOption(opt("--token <token>", "clients must present this token", "TP_MANAGER_TOKEN"))
    .addOption(opt("--tls-cert <file>", "PEM certificate: serve TLS (HTTP/2 by ALPN)", "TP_MANAGER_TLS_CERT"))
    .addOption(opt("--tls-key <file>", "PEM private key for --tls-cert", "TP_MANAGER_TLS_KEY"))
    .addOption(
      opt("--session-ttl <duration>", "a session without keepalives for this long expires", "TP_MANAGER_SESSION_TTL")
        .default(DEFAULTS.sessionTtlMs).argParser(arg(parseDuration)),
    )
    .addOption(
      opt(
        "--resume-grace <duration>",
        "how long a workstation whose connection broke may take to resume its open connections",
        "TP_MANAGER_RESUME_GRACE",
      ).default(DEFAULTS.resumeGraceMs).argParser(arg(parseDuration)),
    )
    .addOption(
      opt(
        "--intercept-grace <duration>",
        "how long intercepted connections announced to a workstation whose link broke wait for it before the pod's " +
          "app serves them",
        "TP_MANAGER_INTERCEPT_GRACE",
      ).default(DEFAULTS.interceptGraceMs).argParser(arg(parseDuration)),
    )
    .addOption(
      opt(
        "--resume-buffer <size>",
        "bytes each resumable connection keeps for its workstation until acknowledged (128KiB, 4MiB, ...)",
        "TP_MANAGER_RESUME_BUFFER",
      ).default(DEFAULTS.resumeBufferBytes).argParser(arg(parseSize)),
    )
    .addOption(
      opt(
        "--session-buffer-bytes <size>",
        "bytes the manager may hold for one workstation's connections together (what it has not read yet, or not " +
          "acknowledged); at it, that workstation's connections stop reading their destinations until it takes some " +
          "(64MiB, 256MiB, ...)",
        "TP_MANAGER_SESSION_BUFFER_BYTES",
      ).default(DEFAULTS.sessionBufferBytes).argParser(arg(positiveSize)),
    )
    .addOption(
      opt("--dial-timeout <duration>", "how long a TCP dial may take", "TP_MANAGER_DIAL_TIMEOUT").default(
        DEFAULTS.dialTimeoutMs,
      )
        .argParser(arg(parseDuration)),
    )
    .addOption(
      opt("--tcp-idle-timeout <duration>", "reset a TCP stream idle this long", "TP_MANAGER_TCP_IDLE_TIMEOUT")
        .default(DEFAULTS.tcpIdleTimeoutMs).argParser(arg(parseDuration)),
    )
    .addOption(
      opt("--udp-idle-timeout <duration>", "end a UDP flow idle this long", "TP_MANAGER_UDP_IDLE_TIMEOUT")
        .default(DEFAULTS.udpIdleTimeoutMs).argParser(arg(parseDuration)),
    )
    .addOption(
      opt("--max-message-size <bytes>", "largest gRPC message accepted", "TP_MANAGER_MAX_MESSAGE_SIZE")
        .default(DEFAULTS.maxMessageSize).argParser(arg(parseSize)),
    )
    .addOption(
      opt(
        "--max-streams-per-session <n>",
        "most tunnel streams one session may hold",
        "TP_MANAGER_MAX_STREAMS_PER_SESSION",
      )
        .default(DEFAULTS.maxStreamsPerSession).argParser(arg(positiveInt)),
    )
    .addOption(
      opt("--max-sessions <n>", "most sessions at once", "TP_MANAGER_MAX_SESSIONS").default(DEFAULTS.maxSessions)
        .argParser(arg(positiveInt)),
    )
    .addOption(
      opt("--log-level <level>", "log from this level up: debug (every stream), info or warn", "TP_MANAGER_LOG_LEVEL")
        .choices(LOG_LEVELS).default("info" as LogLevel),
    )
    .addOption(
      opt(
        "--kubeconfig <file>",
        "learn the pod and service subnets and the cluster DNS from this cluster's API (default: in a pod, its " +
          "service account); --pod-cidr, --service-cidr and --dns-server override what is learned",
        "TP_MANAGER_KUBECONFIG",
      ),
    )
    .action(async (parsed, cmd) => {
      // extra-typings cannot follow this many chained parsers and defaults; the parsers above give these types.
      const opts = parsed as unknown as ManagerFlags;
      opts.clusterDomainSet = cmd.getOptionValueSource("clusterDomain") !== "default";
      if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
        throw new InvalidArgumentError("--tls-cert and --tls-key go together");
      }
      const discovered = await discoverNetwork(opts);
      let dnsServer: HostPort | undefined = opts.dnsServer ? parseHostPort(opts.dnsServer, 53) : undefined;
      if (!dnsServer && discovered?.current.dns.server) dnsServer = parseHostPort(discovered.current.dns.server, 53);
      if (!dnsServer) {
        dnsServer = firstNameserver(await Deno.readTextFile("/etc/resolv.conf").catch(() => ""));
        if (!dnsServer) throw new Error("no --dns-server given and no nameserver in /etc/resolv.conf");
      }
      const config: ManagerConfig = {
        listen: parseHostPort(opts.listen),
        agentListen: opts.agentListen ? parseHostPort(opts.agentListen) : undefined,
        podCidrs: opts.podCidr ?? discovered?.current.podCidrs ?? [],
        serviceCidrs: opts.serviceCidr ?? discovered?.current.serviceCidrs ?? [],
        dnsServer,
        clusterDomain: discovered?.current.dns.clusterDomain && !opts.clusterDomainSet
          ? discovered.current.dns.clusterDomain
          : opts.clusterDomain,
        allow: opts.allow ?? [],
        token: opts.token,
        tls: opts.tlsCert && opts.tlsKey
          ? { cert: await Deno.readTextFile(opts.tlsCert), key: await Deno.readTextFile(opts.tlsKey) }
          : undefined,
        sessionTtlMs: opts.sessionTtl,
        resumeGraceMs: opts.resumeGrace,
        interceptGraceMs: opts.interceptGrace,
        resumeBufferBytes: opts.resumeBuffer,
        sessionBufferBytes: opts.sessionBufferBytes,
        dialTimeoutMs: opts.dialTimeout,
        tcpIdleTimeoutMs: opts.tcpIdleTimeout,
        udpIdleTimeoutMs: opts.udpIdleTimeout,
        maxMessageSize: opts.maxMessageSize,
        maxStreamsPerSession: opts.maxStreamsPerSession,
        maxSessions: opts.maxSessions,
        streamBufferBytes: DEFAULTS.streamBufferBytes,
      };
      await runManager(
        config,
        opts.logLevel,
        await agentAuthFor(opts),
        discovered && {
          watch: discovered,
          apply: (manager, n) =>
            manager.setClusterInfo({
              ...(opts.podCidr ? {} : { podSubnets: n.podCidrs }),
              ...(opts.serviceCidr ? {} : { serviceSubnets: n.serviceCidrs }),
            }),
        },
      );
    });
}

/**
 * In a pod (or with --kubeconfig), learns the cluster's network from its API and watches it; null elsewhere, or when
 * the flags already say everything.
 */
async function discoverNetwork(opts: ManagerFlags): Promise<Discovery | null> {
  const inPod = Deno.env.get("KUBERNETES_SERVICE_HOST") !== undefined;
  if (!opts.kubeconfig && !inPod) return null;
  if (opts.podCidr && opts.serviceCidr && opts.dnsServer) return null;
  // The Kubernetes client loads only here: every other tp command would pay ~300 ms for it.
  const { watchClusterNetwork } = await import("../manager/k8s_discovery.ts");
  const { loadKube } = await import("../k8s/kubeconfig.ts");
  const changes: ((n: ClusterNetwork) => void)[] = [];
  const watch = await watchClusterNetwork(
    { ...(opts.kubeconfig ? { target: loadKube({ kubeconfig: opts.kubeconfig }) } : {}) },
    (n) => changes.forEach((f) => f(n)),
  );
  return { current: watch.current, close: () => watch.close(), onChange: (f) => changes.push(f) };
}

interface Discovery {
  readonly current: ClusterNetwork;
  close(): void;
  onChange(f: (n: ClusterNetwork) => void): void;
}

/**
 * Who may use the agent port: an agent with its workload's Secret (in a pod, or with --kubeconfig), or with the
 * manager's --token (labs). Undefined when no agent port is served.
 */
async function agentAuthFor(opts: ManagerFlags): Promise<AgentAuth | undefined> {
  if (!opts.agentListen) return undefined;
  const { anyAgentAuth, managerTokenAuth, secretAgentAuth, kubeSecretTokenReader } = await import(
    "../manager/agent_auth.ts"
  );
  const auths: AgentAuth[] = [];
  if (opts.kubeconfig || Deno.env.get("KUBERNETES_SERVICE_HOST") !== undefined) {
    const { loadKube } = await import("../k8s/kubeconfig.ts");
    const target = loadKube(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {});
    auths.push(secretAgentAuth(kubeSecretTokenReader(target), {
      onError: (e, ns, secret) =>
        console.error(JSON.stringify({
          level: "warn",
          msg: "cannot read an agent's credential",
          namespace: ns,
          secret,
          reason: errorMessage(e),
        })),
    }));
  }
  if (opts.token) auths.push(managerTokenAuth(opts.token));
  return anyAgentAuth(...auths);
}

interface ManagerFlags {
  agentListen?: string;
  listen: string;
  logLevel: LogLevel;
  kubeconfig?: string;
  /** Whether --cluster-domain (or its variable) was given rather than defaulted. */
  clusterDomainSet?: boolean;
  podCidr?: string[];
  serviceCidr?: string[];
  dnsServer?: string;
  clusterDomain: string;
  allow?: string[];
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  sessionTtl: number;
  resumeGrace: number;
  interceptGrace: number;
  resumeBuffer: number;
  sessionBufferBytes: number;
  dialTimeout: number;
  tcpIdleTimeout: number;
  udpIdleTimeout: number;
  maxMessageSize: number;
  maxStreamsPerSession: number;
  maxSessions: number;
}

function positiveInt(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`"${s}" is not a positive integer`);
  return n;
}

/** Serves until SIGTERM or SIGINT, then ends every session and stream and stops within 10 s. */
export async function runManager(
  config: ManagerConfig,
  logLevel: LogLevel = "info",
  agentAuth: AgentAuth | undefined = undefined,
  discovery?: { watch: Discovery; apply: (m: Manager, n: ClusterNetwork) => void } | null,
): Promise<void> {
  const logger = jsonLogger(logLevel);
  // A throw no handler caught ends one stream at most (proto/h2/ resets it), never every session with the process.
  const unguard = guardProcess(logger);
  const manager = new Manager(config, { logger, ...(agentAuth ? { agentAuth } : {}) });
  discovery?.watch.onChange((n) => {
    logger.info("cluster network changed", { podCidrs: n.podCidrs.join(","), serviceCidrs: n.serviceCidrs.join(",") });
    discovery.apply(manager, n);
  });
  const loopback = /^(127\.|::1$|localhost$)/.test(config.listen.host);
  if (config.token === undefined && !loopback) {
    logger.warn("the manager's client port is open: anyone who reaches it can reach every pod and service", {
      address: formatHostPort(config.listen),
      fix: "listen on 127.0.0.1 (port-forwards arrive there; tp install does so) or set --token (TP_MANAGER_TOKEN)",
    });
  }
  const server = serveManager(manager, {
    onListen: (a) =>
      logger.info("manager listening", {
        address: formatHostPort({ host: a.hostname, port: a.port }),
        agentPort: config.agentListen ? formatHostPort(config.agentListen) : "",
        tls: config.tls !== undefined,
        podCidrs: config.podCidrs.join(","),
        serviceCidrs: config.serviceCidrs.join(","),
        dnsServer: formatHostPort(config.dnsServer),
        allow: config.allow.join(",") || "cluster subnets and DNS server",
        token: config.token !== undefined,
      }),
  });
  const stop = Promise.withResolvers<string>();
  const onTerm = () => stop.resolve("SIGTERM");
  const onInt = () => stop.resolve("SIGINT");
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  const signal = await Promise.race([stop.promise, server.finished.then(() => "server stopped")]);
  logger.info("manager stopping", { signal, sessions: manager.sessions.size, streams: manager.active.size });
  discovery?.watch.close();
  manager.shutdown();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([server.shutdown(), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
  clearTimeout(timer);
  Deno.removeSignalListener("SIGTERM", onTerm);
  Deno.removeSignalListener("SIGINT", onInt);
  unguard();
  logger.info("manager stopped", {});
}
