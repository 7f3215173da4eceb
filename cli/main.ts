/**
 * tp's entry point: the one executable `deno compile` builds, and what `scripts/tp` runs with `deno run`.
 * Each subcommand lives in its own `cli/*_command.ts` file, loaded only when it runs: add a command with one entry in
 * COMMANDS. `tp --help`, `tp version` and `tp status` load no npm package at all (not even commander), so they start
 * in about the time of a bare `deno run` (scripts/bench_cli measures it).
 */
import type { Command } from "@commander-js/extra-typings";
import { ExitCode } from "./exit_code.ts";
import { ExitWith, UsageError } from "./errors.ts";
import { VERSION } from "../base/version.ts";
import { rootHelp } from "./help.ts";
import { errorMessage } from "../base/error_message.ts";
import { KUBE_AS_USER_COMMAND } from "../k8s/options.ts";

/** The resolv.conf guard's internal command (cli/dns/resolv_guard.ts's RESTORE_DNS_COMMAND, kept in step by a test). */
export const RESTORE_DNS_COMMAND = "_restore-dns";

export { ExitCode };

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;
type Output = "text" | "json";

interface CommandEntry {
  name: string;
  /** One line for `tp --help`; `tp NAME --help` shows the command's own, longer description. */
  summary: string;
  /** The cli/ module that builds the command, loaded only when it runs, and the function it exports to build it. */
  module: `${string}_command.ts`;
  build: string;
  /** `tp NAME [-o text|json]` without commander: for the commands scripts call often. */
  quick?: (output: Output) => Promise<void>;
}

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "version",
    summary: "print tp's version",
    module: "version_command.ts",
    build: "versionCommand",
    quick: async (o) => (await import("./version.ts")).printVersion(o),
  },
  {
    name: "manager",
    summary: "run the traffic-manager (in the cluster)",
    module: "manager_command.ts",
    build: "managerCommand",
  },
  {
    name: "connect",
    summary: "connect this machine to the cluster's network (-- CMD: while CMD runs)",
    module: "connect_command.ts",
    build: "connectCommand",
  },
  {
    name: "status",
    summary: "show whether tp is connected, and its device, routes, DNS and counters",
    module: "status_command.ts",
    build: "statusCommand",
    quick: async (o) => await (await import("./status.ts")).showStatus(o),
  },
  {
    name: "quit",
    summary: "disconnect, and restore this machine's routes and DNS",
    module: "quit_command.ts",
    build: "quitCommand",
  },
  {
    name: "install",
    summary: "install the traffic-manager in the cluster",
    module: "install_command.ts",
    build: "installCommand",
  },
  {
    name: "uninstall",
    summary: "remove the traffic-manager and everything tp install created",
    module: "install_command.ts",
    build: "uninstallCommand",
  },
  {
    name: "intercept",
    summary: "send a workload's connections to this machine (-- CMD: with the pod's environment)",
    module: "intercept_command.ts",
    build: "interceptCommand",
  },
  {
    name: "leave",
    summary: "end this machine's intercepts of a workload (--port: only one port's)",
    module: "intercept_command.ts",
    build: "leaveCommand",
  },
  {
    name: "list",
    summary: "list the workloads with tp's traffic-agent, and their intercepts",
    module: "intercept_command.ts",
    build: "listCommand",
  },
  {
    name: "agent",
    summary: "run the traffic-agent (a sidecar in a workload's pod)",
    module: "agent_command.ts",
    build: "agentCommand",
  },
  {
    name: "config",
    summary: "show tp's config file (defaults for flags)",
    module: "config_command.ts",
    build: "configCommand",
  },
  {
    name: "loglevel",
    summary: "change what the running daemon logs (debug, info, warn, error)",
    module: "loglevel_command.ts",
    build: "loglevelCommand",
  },
  {
    name: "gather-logs",
    summary: "write one archive of logs, status and versions for a bug report",
    module: "gather_logs_command.ts",
    build: "gatherLogsCommand",
  },
  {
    name: "completion",
    summary: "print the completion script for bash, zsh or fish",
    module: "completion_command.ts",
    build: "completionCommand",
  },
];

/**
 * Loads a command's module and builds the command. The specifier is computed on purpose: Deno loads the module graph
 * of every literal `import("...")` at start, which would make every command pay for all the others (scripts/compile
 * includes each cli/*_command.ts in the executable; tests/cli_test.ts builds every entry).
 */
export async function buildCommand(c: CommandEntry): Promise<AnyCommand> {
  const mod = await import(new URL(`./${c.module}`, import.meta.url).href) as Record<string, unknown>;
  const build = mod[c.build];
  if (typeof build !== "function") throw new TypeError(`cli/${c.module} exports no function ${c.build}`);
  return build() as AnyCommand;
}

const DESCRIPTION =
  "tp makes a Kubernetes cluster's network part of this machine: a virtual network interface routes " +
  "the cluster's pod and service subnets through one connection to the cluster's traffic-manager.";

/** `tp --help`: from COMMANDS, loading none of them. */
export function help(): string {
  return rootHelp(DESCRIPTION, [
    { term: "--version", summary: "print tp's version" },
    { term: "-h, --help", summary: "display help for command" },
  ], [
    ...COMMANDS.map((c) => ({ term: c.name, summary: c.summary })),
    { term: "help [command]", summary: "display help for command" },
  ]);
}

/**
 * Builds the `tp` program with `load` (the command about to run, or all of them) built for real and every other
 * command as a stub (its name and summary), so commander can name and suggest it. Exported for tests.
 */
export async function program(load: (c: CommandEntry) => boolean = () => true): Promise<Command> {
  const { Command } = await import("@commander-js/extra-typings");
  const config = await configFile();
  const tp = new Command("tp").description(DESCRIPTION).version(VERSION, "--version", "print tp's version");
  for (const c of COMMANDS) {
    if (!load(c)) {
      tp.addCommand(new Command(c.name).description(c.summary));
      continue;
    }
    const cmd = await buildCommand(c);
    config?.apply(cmd, c.name);
    tp.addCommand(cmd);
  }
  configureTree(tp as unknown as Command);
  return tp as unknown as Command;
}

/** The config file's defaults, when there is one (cli/config.ts; loaded only then: it needs an npm package). */
async function configFile(): Promise<{ apply(cmd: AnyCommand, name: string): void } | null> {
  const path = configPathQuick();
  if (!path) return null;
  const m = await import(new URL("./config.ts", import.meta.url).href) as typeof import("./config.ts");
  const config = await m.loadConfig(path, COMMANDS.map((c) => c.name));
  return { apply: (cmd, name) => m.applyConfig(cmd, config[name], path) };
}

/** The config file's path if it exists (cli/config.ts's configPath, without loading it). */
function configPathQuick(): string | null {
  const path = Deno.env.get("TP_CONFIG") ||
    `${Deno.env.get("XDG_CONFIG_HOME") || `${Deno.env.get("HOME") ?? ""}/.config`}/tp/config.yaml`;
  try {
    Deno.statSync(path);
    return path;
  } catch {
    return null;
  }
}

/** Gives every command tp's error style: "tp: <what is wrong>" and a pointer to the help. */
function configureTree(cmd: Command): void {
  cmd.showHelpAfterError(`(run ${cmdPath(cmd)} --help for its commands and flags)`)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`tp: ${str.replace(/^error: /, "")}`) });
  for (const sub of cmd.commands) configureTree(sub as Command);
}

function cmdPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent as Command | null) names.unshift(c.name());
  return names.join(" ");
}

/** `-o FORMAT`, `--output FORMAT`, `--output=FORMAT` or nothing: the arguments a quick command takes. */
function quickOutput(args: string[]): Output | undefined {
  if (args.length === 0) return "text";
  const f = args.length === 1
    ? /^--output=(.*)$/.exec(args[0]!)?.[1]
    : (/^(-o|--output)$/.test(args[0]!) && args.length === 2 ? args[1] : undefined);
  return f === "text" || f === "json" ? f : undefined;
}

/** Runs tp with the given arguments and returns its exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const [first, ...rest] = args;
    if (first === undefined || first === "-h" || first === "--help" || (first === "help" && !rest.length)) {
      (first === undefined ? console.error : console.log)(help().trimEnd());
      return ExitCode.ok;
    }
    if (first === "--version" && !rest.length) {
      console.log(VERSION);
      return ExitCode.ok;
    }
    if (first === RESTORE_DNS_COMMAND) {
      // Run by the resolv.conf guard, not by a person: loads only what it needs (computed specifier, as buildCommand).
      const m = await import(new URL("./restore_dns_command.ts", import.meta.url).href) as {
        restoreDnsMain(args: string[]): Promise<number>;
      };
      return await m.restoreDnsMain(rest);
    }
    if (first === KUBE_AS_USER_COMMAND) {
      // Run by root, as the user who ran sudo, to read their kubeconfig (k8s/as_user.ts).
      const m = await import(new URL("./kube_as_user_command.ts", import.meta.url).href) as {
        kubeAsUserMain(args: string[]): Promise<number>;
      };
      return await m.kubeAsUserMain(rest);
    }
    const name = first === "help" ? rest[0] : first;
    const entry = COMMANDS.find((c) => c.name === name);
    // A config file may change a quick command's flags: then commander reads it.
    const output = entry?.quick && first !== "help" && !configPathQuick() ? quickOutput(rest) : undefined;
    if (output) await entry!.quick!(output);
    else await (await program((c) => c === entry)).parseAsync(args, { from: "user" });
    return ExitCode.ok;
  } catch (e) {
    const code = (e as { code?: unknown }).code; // a CommanderError's, without loading commander to ask
    if (typeof code === "string" && code.startsWith("commander.")) {
      if (code === "commander.helpDisplayed" || code === "commander.version" || code === "commander.help") {
        return ExitCode.ok;
      }
      return ExitCode.usage;
    }
    if (e instanceof ExitWith) return e.code;
    console.error(`tp: ${errorMessage(e)}`);
    return e instanceof UsageError ? ExitCode.usage : ExitCode.failure;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
