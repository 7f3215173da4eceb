/**
 * `tp intercept`, `tp leave` and `tp list`: the workstation's side of intercepts, through the running daemon
 * (`tp connect` first). The daemon holds the intercepts; these commands ask it over the control socket.
 */
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { outputOption, printJson } from "./output.ts";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { statePaths } from "./daemon/state.ts";
import { ExitCode } from "./exit_code.ts";
import { ExitWith, UsageError } from "./errors.ts";
import type { AgentList, InterceptInfo } from "../proto/messages.ts";

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

/** An environment file: KEY=VALUE lines (docker's --env-file format: no quoting, one variable a line). */
export function envFileText(env: Record<string, string>): string {
  return Object.entries(env)
    .filter(([, v]) => !v.includes("\n"))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}\n`)
    .join("");
}

export function interceptCommand() {
  return new Command("intercept")
    .description(
      "Send the connections that reach a workload's port in the cluster to this machine's 127.0.0.1:LOCAL_PORT, " +
        "while connected. The workload needs tp's traffic-agent (tp agent). With -- CMD ARGS: run CMD with the " +
        "pod's environment, then end the intercept and exit with CMD's exit code.",
    )
    .argument("<workload>", "the Deployment (or other workload) to intercept, in the connected namespace")
    .requiredOption("-p, --port <local[:app]>", "LOCAL_PORT, or LOCAL_PORT:APP_PORT when the app has several ports")
    .addOption(
      new Option("--mount <dir|false>", "where to mount the pod's volumes (false: no mount)").default("false"),
    )
    .option("--env-file <file>", "write the pod's environment here, KEY=VALUE lines")
    .option("--env-json <file>", "write the pod's environment here as JSON")
    .addOption(outputOption())
    .argument("[command...]", "a command to run while intercepting (after --)")
    .action(async (workload, command, opts) => {
      const port = parsePortSpec(opts.port);
      if (opts.mount !== "false") {
        throw new UsageError(`--mount ${opts.mount}: volume mounts are not built yet; pass --mount=false`);
      }
      const info = await ask({ op: "intercept", workload, ...port }) as InterceptInfo;
      if (opts.envFile) await Deno.writeTextFile(opts.envFile, envFileText(info.env));
      if (opts.envJson) await Deno.writeTextFile(opts.envJson, JSON.stringify(info.env, null, 2) + "\n");
      if (opts.output === "json") printJson(info);
      else {
        console.error(
          `tp: intercepting ${info.workload} port ${info.appPort} (pod ${info.podName || "?"}, ${
            info.podIp || "?"
          }): its connections now reach 127.0.0.1:${info.localPort} here`,
        );
      }
      if (!command.length) return;
      const { runCommand } = await import("./connect_command.ts");
      let code: number;
      try {
        code = await runCommand(command, info.env);
      } finally {
        await ask({ op: "leave", workload }).catch((e) => console.error(`tp: ${(e as Error).message}`));
      }
      if (code !== 0) throw new ExitWith(code);
    });
}

export function leaveCommand() {
  return new Command("leave")
    .description("End this machine's intercept of a workload: its connections go to the app in the cluster again.")
    .argument("<workload>", "the intercepted workload")
    .action(async (workload) => {
      const r = await ask({ op: "leave", workload }) as { removed: number };
      if (r.removed === 0) {
        console.error(`tp: ${workload} is not intercepted from this machine`);
        throw new ExitWith(ExitCode.failure);
      }
      console.error(`tp: left ${workload}`);
    });
}

export function listCommand() {
  return new Command("list")
    .description("List the workloads of the connected namespace that have tp's traffic-agent, and their intercepts.")
    .option("-n, --namespace <ns>", "another namespace")
    .addOption(outputOption())
    .action(async (opts) => {
      const r = await ask({ op: "list", namespace: opts.namespace ?? "" }) as AgentList;
      const workloads = [...new Set(r.agents.map((a) => `${a.namespace}/${a.workload}`))].sort();
      const rows = workloads.map((w) => {
        const [namespace, workload] = w.split("/") as [string, string];
        const agents = r.agents.filter((a) => a.namespace === namespace && a.workload === workload);
        const intercepts = r.intercepts.filter((i) => i.namespace === namespace && i.workload === workload);
        return {
          namespace,
          workload,
          pods: agents.map((a) => a.podName),
          ports: [...new Set(agents.flatMap((a) => a.forwards.map((f) => f.appPort)))],
          intercepted: intercepts.map((i) => ({ appPort: i.appPort, by: i.clientName })),
        };
      });
      if (opts.output === "json") return printJson({ workloads: rows });
      if (!rows.length) return console.log("No workload in this namespace has tp's traffic-agent.");
      for (const row of rows) {
        const state = row.intercepted.length
          ? `intercepted: ${row.intercepted.map((i) => `port ${i.appPort} by ${i.by}`).join(", ")}`
          : "ready to intercept";
        console.log(`${row.workload}\t${row.pods.length} pod(s), ports ${row.ports.join(", ")}\t${state}`);
      }
    });
}
