/**
 * tp's entry point: the one executable `deno compile` builds, and what `scripts/tp` runs with `deno run`.
 * Each subcommand lives in its own `cli/*_command.ts` file and is added here.
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { VERSION } from "./version.ts";
import { versionCommand } from "./version_command.ts";
import { managerCommand } from "./manager_command.ts";
import { installCommand, uninstallCommand } from "./install_command.ts";
import { ExitWith, UsageError } from "./errors.ts";
import { connectCommand } from "./connect_command.ts";
import { statusCommand } from "./status_command.ts";
import { quitCommand } from "./quit_command.ts";
import { ExitCode } from "./exit_code.ts";
import { interceptCommand, leaveCommand, listCommand } from "./intercept_command.ts";
import { agentCommand } from "./agent_command.ts";

export { ExitCode };

/** Builds the `tp` program; exported so tests can run it without a subprocess. */
export function program(): Command {
  const tp = new Command("tp")
    .description(
      "tp makes a Kubernetes cluster's network part of this machine: a virtual network interface routes the " +
        "cluster's pod and service subnets through one connection to the cluster's traffic-manager.",
    )
    .version(VERSION, "--version", "print tp's version");
  tp.addCommand(versionCommand());
  tp.addCommand(managerCommand());
  tp.addCommand(connectCommand());
  tp.addCommand(statusCommand());
  tp.addCommand(quitCommand());
  tp.addCommand(installCommand());
  tp.addCommand(uninstallCommand());
  tp.addCommand(interceptCommand());
  tp.addCommand(leaveCommand());
  tp.addCommand(listCommand());
  tp.addCommand(agentCommand());
  configureTree(tp as unknown as Command);
  return tp as unknown as Command;
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

/** Runs tp with the given arguments and returns its exit code. */
export async function main(args: string[]): Promise<number> {
  const tp = program();
  try {
    await tp.parseAsync(args, { from: "user" });
    return ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") {
        return ExitCode.ok;
      }
      return ExitCode.usage;
    }
    if (e instanceof ExitWith) return e.code;
    console.error(`tp: ${e instanceof Error ? e.message : String(e)}`);
    return e instanceof UsageError ? ExitCode.usage : ExitCode.failure;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
