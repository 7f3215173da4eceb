import { Argument, Command } from "@commander-js/extra-typings";
import { bashCompletion, type CommandSpec, fishCompletion, zshCompletion } from "./completion.ts";

const SHELLS = ["bash", "zsh", "fish"] as const;

/** `tp completion bash|zsh|fish`: the shell's completion script, for every command and flag tp has. */
export function completionCommand() {
  return new Command("completion")
    .description(
      "Print the completion script for a shell: source <(tp completion bash) in ~/.bashrc, source <(tp completion " +
        "zsh) after compinit in ~/.zshrc, tp completion fish > ~/.config/fish/completions/tp.fish.",
    )
    .addArgument(new Argument("<shell>", "bash, zsh or fish").choices(SHELLS))
    .action(async (shell) => {
      const { COMMANDS, program } = await import("./main.ts");
      const summaries = new Map(COMMANDS.map((c) => [c.name, c.summary]));
      const specs = describe(await program(), summaries);
      const script = shell === "bash"
        ? bashCompletion(specs)
        : shell === "zsh"
        ? zshCompletion(specs)
        : fishCompletion(specs);
      await Deno.stdout.write(new TextEncoder().encode(script));
    });
}

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

/** tp's commands and their visible flags, as the completion scripts need them. */
function describe(root: AnyCommand, summaries: Map<string, string>): CommandSpec[] {
  const commands = root.commands as AnyCommand[];
  const help = { name: "help", summary: "display help for command", flags: [], words: commands.map((c) => c.name()) };
  return [
    ...commands.map((c): CommandSpec => {
      const words = c.registeredArguments[0]?.argChoices;
      return {
        name: c.name(),
        summary: summaries.get(c.name()) ?? c.description(),
        words,
        flags: c.options.filter((o) => !o.hidden).map((o) => ({
          long: o.long,
          short: o.short,
          summary: o.description,
          value: o.required || o.optional,
          choices: o.argChoices,
          file: /<(file|path)[^>]*>/.test(o.flags),
        })),
      };
    }),
    help,
  ];
}
