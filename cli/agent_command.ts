import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { jsonLogger } from "../manager/log.ts";

/** "AGENT_PORT:APP_PORT" pairs from a repeatable flag or a comma-separated variable. */
function forwards(value: string, previous: { agentPort: number; appPort: number }[] | undefined) {
  const out = [...(previous ?? [])];
  for (const part of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+):(\d+)$/.exec(part);
    const a = Number(m?.[1]), b = Number(m?.[2]);
    if (!m || a < 1 || a > 65535 || b < 1 || b > 65535) {
      throw new InvalidArgumentError(`"${part}" is not AGENT_PORT:APP_PORT (two ports, 1-65535), e.g. 9900:8080`);
    }
    out.push({ agentPort: a, appPort: b });
  }
  return out;
}

function paths(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").map((s) => s.trim()).filter(Boolean)];
}

const opt = (flags: string, description: string, env: string) => new Option(flags, description).env(env);

/**
 * `tp agent`: the traffic-agent, run as a sidecar in a workload's pods (tp intercept injects it). Every flag also
 * reads a TP_AGENT_* variable, which is how the injected container sets them.
 */
export function agentCommand() {
  return new Command("agent")
    .description(
      "Run the traffic-agent (a sidecar in a workload's pod): it forwards each AGENT_PORT to the app's APP_PORT, " +
        "sends the connections of intercepted ports to the intercepting workstation through the traffic-manager, " +
        "and answers DNS in the pod's context. Needs no privileges.",
    )
    .addOption(opt("--manager-url <url>", "the traffic-manager, http://HOST:PORT or https://", "TP_AGENT_MANAGER_URL"))
    .addOption(opt("--token <token>", "the credential the manager expects of this workload", "TP_AGENT_TOKEN"))
    .addOption(opt("--namespace <ns>", "the pod's namespace", "TP_AGENT_NAMESPACE"))
    .addOption(
      opt("--workload <name>", "the workload (Deployment, StatefulSet, ...) the pod belongs to", "TP_AGENT_WORKLOAD"),
    )
    .addOption(opt("--pod-name <name>", "the pod's name (default: the host name)", "TP_AGENT_POD_NAME"))
    .addOption(opt("--pod-ip <ip>", "the pod's IP", "TP_AGENT_POD_IP"))
    .addOption(
      opt(
        "--forward <agent:app>",
        "listen on AGENT_PORT, forward to the app's APP_PORT (repeatable)",
        "TP_AGENT_FORWARD",
      )
        .argParser(forwards),
    )
    .addOption(
      opt("--mount <dir>", "an app volume mount, as the agent sees it (repeatable)", "TP_AGENT_MOUNTS").argParser(
        paths,
      ),
    )
    .addOption(
      opt(
        "--volume-root <dir>",
        "the directory whose tree a workstation's mount shows: where the app's volume mounts appear at their " +
          "container paths (in a pod, / : the agent mounts the app's volumes at the same paths)",
        "TP_AGENT_VOLUME_ROOT",
      ).default("/"),
    )
    .action(async (parsed) => {
      // extra-typings cannot follow options with both an env and a custom parser; the parsers above give these types.
      const o = parsed as unknown as AgentFlags;
      const missing = [
        ["--manager-url", o.managerUrl],
        ["--namespace", o.namespace],
        ["--workload", o.workload],
        ["--forward", o.forward?.length ? "x" : undefined],
      ].filter(([, v]) => !v).map(([f]) => f);
      if (missing.length) {
        throw new InvalidArgumentError(
          `${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} required (or TP_AGENT_* variables)`,
        );
      }
      const logger = jsonLogger("info");
      const log = (line: string) => logger.info(line, {});
      const { runAgent } = await import("../agent/agent.ts");
      const { podResolver } = await import("../agent/pod_resolver.ts");
      const { serveSftp, sftpProblem } = await import("../agent/sftp.ts");
      const ac = new AbortController();
      const stop = () => ac.abort();
      Deno.addSignalListener("SIGTERM", stop);
      Deno.addSignalListener("SIGINT", stop);
      try {
        await runAgent({
          managerUrl: o.managerUrl!,
          token: o.token,
          namespace: o.namespace!,
          workload: o.workload!,
          podName: o.podName ?? Deno.hostname(),
          podIp: o.podIp ?? "",
          forwards: o.forward!,
          mounts: o.mount ?? [],
          env: appEnvironment(Deno.env.toObject()),
        }, {
          signal: ac.signal,
          log,
          resolver: podResolver(o.namespace!),
          sftp: async (stream) => {
            await serveSftp(stream, { root: o.volumeRoot ?? "/", log: (l) => log(`sftp-server: ${l}`) }).ended;
          },
          sftpProblem: () => sftpProblem({ root: o.volumeRoot ?? "/" }),
        });
      } finally {
        Deno.removeSignalListener("SIGTERM", stop);
        Deno.removeSignalListener("SIGINT", stop);
      }
    });
}

/**
 * The app's environment as the agent sees it: the injected agent container carries the app container's env, plus
 * its own TP_AGENT_* settings, which are left out (the token above all).
 */
export function appEnvironment(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("TP_AGENT_")));
}

interface AgentFlags {
  managerUrl?: string;
  token?: string;
  namespace?: string;
  workload?: string;
  podName?: string;
  podIp?: string;
  forward?: { agentPort: number; appPort: number }[];
  mount?: string[];
  volumeRoot?: string;
}
