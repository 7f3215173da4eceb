/**
 * `tp intercept`, `tp leave` and `tp list`: the workstation's side of intercepts, through the running daemon
 * (`tp connect` first). The daemon holds the intercepts; these commands ask it over the control socket.
 */
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { outputOption, printJson } from "./output.ts";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import type { ConnectSettings } from "./daemon/settings.ts";
import { statePaths } from "./daemon/state.ts";
import { ExitCode } from "./exit_code.ts";
import { ExitWith, UsageError } from "./errors.ts";
import { isNoAgentError, workloadName } from "./intercept_k8s.ts";
import type { AgentList, InterceptInfo } from "../proto/messages.ts";
import type { KeptMountStatus } from "./daemon/kept_mount.ts";
import { mountStateText } from "./daemon/status_text.ts";
import { errorMessage } from "../base/error_message.ts";
import { versionSkewNote } from "./daemon/version_skew.ts";

/** "LOCAL" or "LOCAL:APP_PORT". */
export function parsePortSpec(text: string): { localPort: number; appPort: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(text);
  const local = Number(m?.[1]), app = m?.[2] === undefined ? 0 : Number(m[2]);
  if (!m || local < 1 || local > 65535 || (m[2] !== undefined && (app < 1 || app > 65535))) {
    throw new InvalidArgumentError(
      `"${text}" is not LOCAL_PORT[:APP_PORT] (ports 1-65535), e.g. --port 18080:8080`,
    );
  }
  return { localPort: local, appPort: app };
}

/** Sends a request to the daemon; "not connected" is an error that says to run tp connect. */
async function ask(req: Parameters<typeof controlRequest>[1], timeoutMs = 30_000): Promise<unknown> {
  try {
    return await controlRequest(statePaths().socket, req, timeoutMs);
  } catch (e) {
    if (e instanceof NotRunningError) {
      console.error("tp: not connected: run tp connect first (intercepts go through the connected daemon)");
      throw new ExitWith(ExitCode.notConnected);
    }
    throw e;
  }
}

/** Says so on stderr when the daemon was started by another version of tp (it may not answer as this one expects). */
async function warnIfSkewed(): Promise<void> {
  const st = await ask({ op: "status" }) as { version?: unknown };
  const note = versionSkewNote(st.version);
  if (note) console.error(`tp: warning: ${note}`);
}

/** An environment file: KEY=VALUE lines (docker's --env-file format: no quoting, one variable a line). */
export function envFileText(env: Record<string, string>): string {
  return Object.entries(env)
    .filter(([, v]) => !v.includes("\n"))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}\n`)
    .join("");
}

/** The connected daemon's settings (kubeconfig, context, namespaces; the token is not in them). */
async function daemonSettings(): Promise<ConnectSettings> {
  const st = await ask({ op: "status" }) as { settings: ConnectSettings };
  return st.settings;
}

/** The agents the manager knows now, of workload `name` in the session's namespace. */
async function agentRegistered(name: string): Promise<boolean> {
  const r = await ask({ op: "list", namespace: "" }) as AgentList;
  return r.agents.some((a) => a.workload === name);
}

export function interceptCommand() {
  return new Command("intercept")
    .description(
      "Send the connections that reach a workload's port in the cluster to this machine's 127.0.0.1:LOCAL_PORT, " +
        "while connected. When the workload has no traffic-agent yet and tp is connected through Kubernetes, tp " +
        "injects it (as you, with your kubeconfig) and waits for its pods to restart with it; tp uninstall --agent " +
        "takes it out. With -- CMD ARGS: run CMD with the pod's environment, then end the intercept and exit with " +
        "CMD's exit code.",
    )
    .argument("<workload>", "the Deployment (or deployment/NAME, statefulset/NAME, ...) in the connected namespace")
    .option("-p, --port <local[:app]>", "LOCAL_PORT, or LOCAL_PORT:APP_PORT when the app has several ports")
    .addOption(
      new Option(
        "--mount <dir|false>",
        "where to mount the pod's volumes, as you (default: a new directory under $XDG_RUNTIME_DIR/tp, or " +
          "/tmp/tp-$UID; false: no mount). A default mount that fails only warns; a --mount DIR that fails fails",
      ),
    )
    .option("--env-file <file>", "write the pod's environment here, KEY=VALUE lines")
    .option("--env-json <file>", "write the pod's environment here as JSON")
    .option("--dry-run", "print how tp would inject the traffic-agent (-o yaml: the patches), and change nothing")
    .option(
      "--timeout <seconds>",
      "how long to wait for the workload's pods to run the agent after injecting it",
      "120",
    )
    .addOption(
      new Option("-o, --output <format>", "output format: text, json, or yaml (with --dry-run: the patches)")
        .choices(["text", "json", "yaml"] as const).default("text" as const),
    )
    .argument("[command...]", "a command to run while intercepting (after --)")
    .action(async (workload, command, opts) => {
      if (opts.dryRun) return await dryRun(workload, opts.output);
      if (!opts.port) throw new UsageError("required option '-p, --port <local[:app]>' not specified");
      const timeout = Number(opts.timeout);
      if (!(timeout > 0)) throw new UsageError(`--timeout: "${opts.timeout}" is not a positive number of seconds`);
      const port = parsePortSpec(opts.port);
      const name = workloadName(workload);
      const mount = opts.mount === "false" ? undefined : {
        dir: opts.mount && opts.mount !== "true" ? absolute(opts.mount) : defaultMountDir(name),
        required: opts.mount !== undefined && opts.mount !== "true",
      };
      await warnIfSkewed();
      const req = { op: "intercept" as const, workload: name, ...port, ...(mount ? { mount } : {}) };
      type Created = InterceptInfo & { mount?: { dir?: string; error?: string } };
      let info: Created;
      try {
        info = await ask(req) as Created;
      } catch (e) {
        if (!isNoAgentError(e)) throw e;
        const settings = await daemonSettings();
        if (settings.managerUrl) {
          throw new Error(
            `${errorMessage(e)}. tp is connected with --manager-url (no Kubernetes), so it cannot inject ` +
              `the agent: run tp agent beside the app, or connect through Kubernetes`,
          );
        }
        const { injectAndWait } = await import("./intercept_k8s.ts");
        await injectAndWait(settings, workload, {
          registered: agentRegistered,
          progress: (line) => console.error(`tp: ${line}`),
          timeoutMs: timeout * 1000,
        });
        info = await ask(req) as Created;
      }
      const env = { ...info.env, ...(info.mount?.dir ? { TP_ROOT: info.mount.dir } : {}) };
      if (opts.envFile) await Deno.writeTextFile(opts.envFile, envFileText(env));
      if (opts.envJson) await Deno.writeTextFile(opts.envJson, JSON.stringify(env, null, 2) + "\n");
      if (opts.output === "json") printJson(info);
      else if (opts.output === "yaml") console.log((await import("yaml")).stringify(info).trimEnd());
      else {
        console.error(
          `tp: intercepting ${info.workload} port ${info.appPort} (pod ${info.podName || "?"}, ${
            info.podIp || "?"
          }): its connections now reach 127.0.0.1:${info.localPort} here`,
        );
        if (info.mount?.dir) console.error(`tp: the pod's volumes are at ${info.mount.dir} (TP_ROOT)`);
        if (info.mount?.error) console.error(`tp: warning: no volumes mounted: ${info.mount.error}`);
      }
      if (!command.length) return;
      const { runCommand } = await import("./connect_command.ts");
      let code: number;
      try {
        code = await runCommand(command, env);
      } finally {
        await ask({ op: "leave", workload: name }).catch((e) => console.error(`tp: ${errorMessage(e)}`));
      }
      if (code !== 0) throw new ExitWith(code);
    });
}

/**
 * `tp intercept WORKLOAD --dry-run`: the injection plan for the workload as it is now, read with the connected
 * daemon's kubeconfig, context and namespace. Nothing is written.
 */
async function dryRun(workload: string, output: "text" | "json" | "yaml"): Promise<void> {
  const settings = await daemonSettings();
  if (settings.managerUrl) {
    throw new UsageError(
      "--dry-run shows how tp would inject the traffic-agent through Kubernetes; this daemon is connected with " +
        "--manager-url (no Kubernetes)",
    );
  }
  const [{ planAgent, findWorkload }, { loadKube }, { injectionYaml, hasAgent, workloadRef }, { kubeOptionsOf }] =
    await Promise.all([
      import("../k8s/agent_install.ts"),
      import("../k8s/kubeconfig.ts"),
      import("../k8s/inject.ts"),
      import("./intercept_k8s.ts"),
    ]);
  const t = loadKube(kubeOptionsOf(settings));
  const found = await findWorkload(t, settings.namespace, workload);
  const ref = workloadRef(found.kind, found.object.metadata!.name!);
  if (hasAgent(found.object)) {
    console.error(`tp: ${ref} has tp's traffic-agent already: tp intercept would change nothing in the cluster`);
    if (output === "json") printJson({ workload: ref, namespace: settings.namespace, changes: [] });
    return;
  }
  const plan = await planAgent(t, settings.namespace, ref);
  if (output === "yaml") return console.log(injectionYaml(plan).trimEnd());
  if (output === "json") {
    return printJson({
      workload: ref,
      namespace: plan.namespace,
      appContainer: plan.appContainer,
      forward: plan.forward,
      secret: plan.secret.metadata?.name,
      patches: [plan.workloadPatch, ...plan.servicePatches],
    });
  }
  console.log(`tp intercept ${workload} would, in namespace ${plan.namespace} (context "${t.context}"):`);
  console.log(`  create secret/${plan.secret.metadata?.name} (the agent's credential)`);
  console.log(`  add container tp-agent to ${ref}'s pods, beside "${plan.appContainer}" (they restart)`);
  for (const p of plan.servicePatches) {
    console.log(
      `  re-point service/${p.name} to the agent (${
        plan.forward.map((f) => `${f.appPort} -> ${f.agentPort}`).join(", ")
      })`,
    );
  }
  console.log("(-o yaml prints the patches)");
}

function absolute(p: string): string {
  return p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;
}

/** A fresh directory for a workload's volumes under the user's runtime directory (made by the daemon, as the user). */
function defaultMountDir(workload: string): string {
  const base = Deno.env.get("XDG_RUNTIME_DIR") ? `${Deno.env.get("XDG_RUNTIME_DIR")}/tp` : `/tmp/tp-${Deno.uid()}`;
  return `${base}/${workload}`;
}

export function leaveCommand() {
  return new Command("leave")
    .description(
      "End this machine's intercepts of a workload (with --port, only that port's): its connections go to the app " +
        "in the cluster again. The volumes stay mounted while another port of the workload is intercepted.",
    )
    .argument("<workload>", "the intercepted workload")
    .option("-p, --port <app_port>", "only the intercept of this port of the workload (its APP_PORT, as tp list shows)")
    .action(async (workload, opts) => {
      // 0 is no port: it would reach the daemon as "every port" and end them all.
      const appPort = opts.port === undefined ? 0 : Number(opts.port);
      if (opts.port !== undefined && (!Number.isInteger(appPort) || appPort < 1 || appPort > 65535)) {
        throw new UsageError(`--port: "${opts.port}" is not a port (1-65535)`);
      }
      const name = workloadName(workload);
      await warnIfSkewed();
      const r = await ask({ op: "leave", workload: name, ...(appPort ? { appPort } : {}) }) as { removed: number };
      const what = appPort ? `${name} port ${appPort}` : name;
      if (r.removed === 0) {
        console.error(`tp: ${what} is not intercepted from this machine`);
        throw new ExitWith(ExitCode.failure);
      }
      // One port is one intercept: more ended means an older daemon or traffic-manager, which ends every port.
      if (appPort && r.removed > 1) {
        console.error(`tp: left every port of ${name} (the daemon or the traffic-manager predates leaving one port)`);
      } else console.error(`tp: left ${what}`);
    });
}

export function listCommand() {
  return new Command("list")
    .description("List the workloads of the connected namespace that have tp's traffic-agent, and their intercepts.")
    .option("-n, --namespace <ns>", "another namespace")
    .addOption(outputOption())
    .action(async (opts) => {
      await warnIfSkewed();
      const r = await ask({ op: "list", namespace: opts.namespace ?? "" }) as AgentList & {
        mounts?: KeptMountStatus[];
      };
      const workloads = [...new Set(r.agents.map((a) => `${a.namespace}/${a.workload}`))].sort();
      const rows = workloads.map((w) => {
        const [namespace, workload] = w.split("/") as [string, string];
        const agents = r.agents.filter((a) => a.namespace === namespace && a.workload === workload);
        const intercepts = r.intercepts.filter((i) => i.namespace === namespace && i.workload === workload);
        // This machine's mount of its volumes (an older daemon says nothing of mounts).
        const mount = r.mounts?.find((m) => m.namespace === namespace && m.workload === workload);
        return {
          namespace,
          workload,
          pods: agents.map((a) => a.podName),
          ports: [...new Set(agents.flatMap((a) => a.forwards.map((f) => f.appPort)))],
          intercepted: intercepts.map((i) => ({ appPort: i.appPort, by: i.clientName })),
          ...(mount &&
            { mount: { dir: mount.dir, state: mount.state, ...(mount.reason && { reason: mount.reason }) } }),
        };
      });
      if (opts.output === "json") return printJson({ workloads: rows });
      if (!rows.length) return console.log("No workload in this namespace has tp's traffic-agent.");
      for (const row of rows) {
        const state = row.intercepted.length
          ? `intercepted: ${row.intercepted.map((i) => `port ${i.appPort} by ${i.by}`).join(", ")}`
          : "ready to intercept";
        const volumes = row.mount ? `\tvolumes at ${row.mount.dir}: ${mountStateText(row.mount)}` : "";
        console.log(`${row.workload}\t${row.pods.length} pod(s), ports ${row.ports.join(", ")}\t${state}${volumes}`);
      }
    });
}
