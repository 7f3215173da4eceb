import { Command, Option } from "@commander-js/extra-typings";
import { outputOption, printJson } from "./output.ts";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { jsonProgress, type ProgressEvent, textProgress } from "./daemon/progress.ts";
import { type ConnectSettings, describeTarget, settingsDiff, validateSettings } from "./daemon/settings.ts";
import { ExitWith } from "./errors.ts";
import { readTokenFile, tokenWarnings } from "./token.ts";
import { runDaemon } from "./daemon/daemon.ts";
import { cleanupStale } from "./daemon/stale.ts";
import { StateAccessError, type StatePaths, statePaths } from "./daemon/state.ts";
import { checkStateDir } from "./daemon/state_dir.ts";
import { sudoProblem } from "./sudo.ts";
import { LOG_LEVELS, LogFile, type LogLevel, stderrLog } from "./daemon/log_file.ts";
import { quitDaemon } from "./quit_command.ts";
import { ExitCode } from "./exit_code.ts";
import { addKubeOptions } from "./k8s/flags.ts";
import { selfArgv } from "./process.ts";
import { errorMessage } from "../base/error_message.ts";
import { versionSkewNote } from "./daemon/version_skew.ts";

export { selfArgv };

const collect = (v: string, prev: string[]) => [...prev, v];

/** `tp connect`: start the daemon (or find it running), optionally run a command while connected. */
export function connectCommand() {
  return addKubeOptions(new Command("connect"))
    .description(
      "Connect this machine to the cluster's network: start tp's daemon, which creates a network interface, routes " +
        "the cluster's pod and service subnets to it, and carries every connection to them through the " +
        "traffic-manager. With -- CMD ARGS, run CMD while connected, then disconnect and exit with CMD's exit code.",
    )
    .addOption(
      new Option(
        "--manager-url <url>",
        "connect to this traffic-manager directly, http://HOST:PORT (h2c) or https://HOST:PORT; without it, tp " +
          "reaches the manager through the Kubernetes API server (a port-forward, like kubectl's)",
      ).env("TP_MANAGER_URL"),
    )
    .addOption(
      new Option(
        "--token <token>",
        "the token the traffic-manager requires; on the command line every user sees it in ps: prefer TP_TOKEN or " +
          "--token-file",
      ).env("TP_TOKEN"),
    )
    .addOption(
      new Option("--token-file <path>", "read the token from this file (its first line), as the user who runs tp")
        .conflicts("token"),
    )
    .option("--also-proxy <cidr>", "route this subnet through the cluster too (repeatable)", collect, [] as string[])
    .option("--never-proxy <cidr>", "never route this subnet through the cluster (repeatable)", collect, [] as string[])
    .option(
      "--allow-conflicting-subnets <cidr>",
      "route cluster subnets inside this CIDR even where this machine already has a route (repeatable)",
      collect,
      [] as string[],
    )
    .option(
      "--warn-prefix <v4,v6>",
      "warn when the cluster announces a subnet wider than these prefix lengths (IPv4, IPv6)",
      "8,32",
    )
    .option("--foreground", "run the daemon in this process instead of the background (containers, CI)", false)
    .addOption(
      new Option("--progress <format>", "how the daemon reports progress").choices(["text", "json"] as const)
        .hideHelp(),
    )
    .addOption(
      new Option("--log-level <level>", "what the daemon logs: debug (each connection), info, warn or error")
        .choices(LOG_LEVELS).default("info" as LogLevel),
    )
    .addOption(outputOption())
    .argument("[command...]", "a command to run while connected (after --)")
    .action(async (cmdArgs, opts, cmd) => {
      const token = opts.tokenFile ? await readTokenFile(opts.tokenFile) : opts.token;
      // The Kubernetes client loads only when tp goes through Kubernetes.
      const kube = opts.managerUrl ? undefined : await import("../k8s/kubeconfig.ts");
      const settings = validateSettings({ ...opts, token }, (f) => {
        // A daemon in this process with the context and namespace named (as tp connect starts one through sudo)
        // resolves the kubeconfig when it dials, at once, with the same errors: resolving it here as well would run
        // the user's helper and credential plugin twice (k8s/as_user.ts).
        if (opts.foreground && f.context && f.namespace) return { context: f.context, namespace: f.namespace };
        const t = kube!.loadKube(f);
        return { context: t.context, namespace: t.namespace };
      });
      for (const w of tokenWarnings(settings, { onArgv: cmd.getOptionValueSource("token") === "cli", ...opts })) {
        console.error(`tp: warning: ${w}`);
      }
      const code = await connect(settings, {
        foreground: opts.foreground,
        progressFormat: opts.progress ?? "text",
        output: opts.output,
        command: cmdArgs,
        logLevel: opts.logLevel,
      });
      if (code !== ExitCode.ok) throw new ExitWith(code);
    });
}

interface ConnectRun {
  foreground: boolean;
  progressFormat: "text" | "json";
  output: "text" | "json";
  command: string[];
  logLevel: LogLevel;
}

async function connect(settings: ConnectSettings, run: ConnectRun): Promise<number> {
  const paths = statePaths();
  try {
    checkStateDir(paths.dir); // root will act there: before anything is read or written
  } catch (e) {
    if (run.progressFormat === "json") jsonProgress(Deno.stdout).error((e as Error).message, ExitCode.failure);
    throw e;
  }
  const say = (s: string) => console.error(`tp: ${s}`);
  // A daemon already running: the same settings are fine, other settings are an error.
  try {
    // The daemon compares (it alone holds the token); a daemon from before it did compares here, tokens left out.
    const status = await controlRequest(paths.socket, { op: "status", compare: { ...settings } }) as {
      settings: ConnectSettings;
      differs?: string[];
    };
    const diff = status.differs ?? settingsDiff({ ...status.settings, token: "" }, { ...settings, token: "" });
    delete status.differs;
    if (diff.length) {
      say(`already connected with other settings (${diff.join("; ")}); run tp quit first`);
      return ExitCode.failure;
    }
    say(`already connected to ${describeTarget(settings)}`);
    const skew = versionSkewNote((status as { version?: unknown }).version);
    if (skew) say(`warning: ${skew}`);
    if (run.command.length) return await runCommand(run.command);
    if (run.output === "json") printJson(status);
    return ExitCode.ok;
  } catch (e) {
    // A state directory root left locked: the daemon, started through sudo, repairs it (ensureStateDir).
    if (e instanceof StateAccessError && Deno.uid() !== 0 && !run.foreground) {
      say(`${e.message.split(";")[0]}; repairing it`);
    } else if (!(e instanceof NotRunningError)) throw e;
  }
  // Not root: the daemon, as root, cleans up after its predecessor.
  const cleaned = Deno.uid() === 0 ? await cleanupStale(paths) : null;
  if (cleaned) say(cleaned);

  if (run.foreground) {
    const progress = run.progressFormat === "json" ? jsonProgress(Deno.stdout) : textProgress();
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    try {
      let commandCode: number | undefined;
      const code = await runDaemon(settings, {
        paths,
        progress,
        // On a terminal the progress already printed the error: the log does not say it twice.
        log: run.progressFormat === "json"
          ? new LogFile(paths.log, { level: run.logLevel })
          : stderrLog(run.logLevel, /^error: /),
        signal: ac.signal,
        whenReady: run.command.length
          ? async () => {
            commandCode = await runCommand(run.command);
            ac.abort();
          }
          : undefined,
      });
      return commandCode ?? code;
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
    }
  }

  const started = await startBackground(settings, paths, run.output, run.logLevel);
  if (started !== ExitCode.ok || !run.command.length) return started;
  const code = await runCommand(run.command);
  await quitDaemon(paths, () => {});
  return code;
}

/**
 * Runs a user's command with the terminal's stdio (and extra environment variables) and returns its exit code
 * (128 + signal when killed).
 */
export async function runCommand(argv: string[], env: Record<string, string> = {}): Promise<number> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      env,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    console.error(`tp: cannot run "${argv[0]}": ${errorMessage(e)}`);
    return 127;
  }
  const st = await child.status;
  return st.signal ? 128 + (Deno.build.os === "linux" ? signalNumber(st.signal) : 0) : st.code;
}

function signalNumber(sig: Deno.Signal): number {
  const n: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return n[sig] ?? 0;
}

function flagsOf(s: ConnectSettings): string[] {
  const f = s.managerUrl ? ["--manager-url", s.managerUrl] : [
    ...(s.kubeconfig ? ["--kubeconfig", s.kubeconfig] : []),
    "--context",
    s.context,
    "--manager-namespace",
    s.managerNamespace,
  ];
  f.push("--namespace", s.namespace);
  for (const c of s.alsoProxy) f.push("--also-proxy", c);
  for (const c of s.neverProxy) f.push("--never-proxy", c);
  for (const c of s.allowConflictingSubnets) f.push("--allow-conflicting-subnets", c);
  f.push("--warn-prefix", s.warnPrefix);
  return f;
}

/** Starts the daemon in the background (through sudo when not root) and relays its progress until it is ready. */
async function startBackground(
  settings: ConnectSettings,
  paths: StatePaths,
  output: "text" | "json",
  logLevel: LogLevel,
): Promise<number> {
  const argv = [
    ...selfArgv(),
    ...["connect", "--foreground", "--progress", "json", "--log-level", logLevel],
    ...flagsOf(settings),
  ];
  const env: Record<string, string> = { TP_STATE_DIR: paths.dir };
  const kubeconfigEnv = Deno.env.get("KUBECONFIG");
  if (kubeconfigEnv) env.KUBECONFIG = kubeconfigEnv; // through sudo too: the kubeconfig is the invoking user's
  if (settings.token) env.TP_TOKEN = settings.token; // not on the command line, where ps would show it
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir; // from source, through sudo too: the cache scripts/tp filled (no network)
  let cmd: string[];
  if (Deno.uid() === 0) {
    cmd = ["setsid", ...argv];
  } else {
    const problem = await sudoProblem({ terminal: Deno.stdin.isTerminal() });
    if (problem) {
      console.error(`tp: ${problem}`);
      return ExitCode.failure;
    }
    console.error("tp: the daemon needs root to create a network interface; starting it with sudo");
    cmd = ["sudo", `--preserve-env=${Object.keys(env).join(",")}`, "setsid", ...argv];
  }
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    env,
    stdin: Deno.uid() === 0 ? "null" : "inherit",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const text = textProgress();
  let result: number | undefined;
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    while (result === undefined) {
      const { value, done } = await lines.read();
      if (done) break;
      buf += value;
      for (let nl = buf.indexOf("\n"); nl >= 0 && result === undefined; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let e: ProgressEvent;
        try {
          e = JSON.parse(line) as ProgressEvent;
        } catch {
          continue;
        }
        if (e.kind === "stage") text.stage(e.stage, e.message);
        else if (e.kind === "ready") {
          if (output === "json") printJson(e.status);
          else text.ready(e.status, e.ms);
          result = ExitCode.ok;
        } else {
          text.error(e.message, e.exitCode);
          result = e.exitCode;
        }
      }
    }
  } finally {
    await lines.cancel().catch(() => {});
  }
  if (result === undefined) {
    const st = await child.status;
    console.error(`tp: the daemon exited (code ${st.code}) before it was ready; its log is ${paths.log}`);
    return ExitCode.failure;
  }
  if (result === ExitCode.ok) child.unref();
  else await child.status;
  return result;
}
