/**
 * Shell completion scripts for tp, generated from a plain description of its commands and flags (built from the
 * command line by completion_command.ts), so the scripts never disagree with tp. Static: a TAB never runs tp.
 */

export interface FlagSpec {
  /** "--output" */
  long?: string | undefined;
  /** "-o" */
  short?: string | undefined;
  summary: string;
  /** Whether the flag takes a value. */
  value: boolean;
  /** The values it accepts, when it names them. */
  choices?: readonly string[] | undefined;
  /** Whether its value is a file name. */
  file?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  flags: FlagSpec[];
  /** Words the command's first argument can be (e.g. `tp completion bash|zsh|fish`). */
  words?: readonly string[] | undefined;
}

const names = (f: FlagSpec) => [f.short, f.long].filter((n): n is string => !!n);

/**
 * A bash script: `source <(tp completion bash)`. Completes commands, flags, flag values, and commands after `--`.
 * Bash 3.2 too (macOS): no mapfile.
 */
export function bashCompletion(commands: readonly CommandSpec[]): string {
  const top = [...commands.map((c) => c.name), "--help", "--version"].join(" ");
  const perCommand = commands.map((c) =>
    `    ${c.name}) words=${shq([...(c.words ?? []), ...c.flags.flatMap(names), "--help"].join(" "))} ;;`
  );
  // A flag's value: one of its choices, a file name, or (anything else) nothing to offer. One arm per reply.
  const arms = new Map<string, string[]>();
  for (const c of commands) {
    for (const f of c.flags.filter((f) => f.value)) {
      const reply = f.choices
        ? `COMPREPLY=($(compgen -W ${shq(f.choices.join(" "))} -- "$cur"))`
        : f.file
        ? `COMPREPLY=($(compgen -f -- "$cur"))`
        : "COMPREPLY=()";
      arms.set(reply, [...arms.get(reply) ?? [], ...names(f).map((n) => shq(`${c.name} ${n}`))]);
    }
  }
  const values = [...arms].map(([reply, patterns]) => `    ${patterns.join("|")})\n      ${reply}; return ;;`);
  return `# tp completion for bash. Load it with: source <(tp completion bash)
_tp_completion() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd="" i words
  for ((i = 1; i < COMP_CWORD; i++)); do
    if [ "\${COMP_WORDS[i]}" = -- ]; then # after --: the command to run while connected
      COMPREPLY=($(compgen -c -- "$cur"))
      return
    fi
    case \${COMP_WORDS[i]} in
      -*) ;;
      *) [ -z "$cmd" ] && cmd=\${COMP_WORDS[i]} ;;
    esac
  done
  case "$cmd $prev" in
${values.join("\n")}
  esac
  case $cmd in
    "") words=${shq(top)} ;;
${perCommand.join("\n")}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _tp_completion tp
`;
}

/** A zsh script: `source <(tp completion zsh)` after compinit, or saved as _tp on $fpath. */
export function zshCompletion(commands: readonly CommandSpec[]): string {
  const described = commands.map((c) => shq(`${c.name}:${zshDesc(c.summary)}`)).join(" ");
  const perCommand = commands.map((c) => {
    const specs = c.flags.map((f) => {
      const ns = names(f);
      const exclusive = ns.length > 1 ? `'(${ns.join(" ")})'{${ns.join(",")}}` : ns[0]!;
      const value = !f.value
        ? ""
        : f.choices
        ? `:value:(${f.choices.join(" ")})`
        : f.file
        ? ":file:_files"
        : ":value: ";
      return `${exclusive}${shq(`[${zshDesc(f.summary)}]${value}`)}`;
    });
    if (c.words) specs.push(shq(`1:argument:(${c.words.join(" ")})`));
    specs.push(shq("*::argument:_default"));
    return `    ${c.name}) _arguments -s ${specs.join(" ")} ;;`;
  });
  return `#compdef tp
# tp completion for zsh. Load it with: source <(tp completion zsh)  (after compinit)
_tp() {
  if (( CURRENT == 2 )); then
    local -a cmds
    cmds=(${described})
    _describe -t commands 'tp command' cmds
    return
  fi
  local cmd=\${words[2]}
  shift words
  (( CURRENT-- ))
  case $cmd in
${perCommand.join("\n")}
  esac
}
compdef _tp tp
`;
}

/** A fish script: `tp completion fish | source`, or saved as ~/.config/fish/completions/tp.fish. */
export function fishCompletion(commands: readonly CommandSpec[]): string {
  const lines = [
    "# tp completion for fish. Load it with: tp completion fish | source",
    "complete -c tp -f",
    ...commands.map((c) => `complete -c tp -n __fish_use_subcommand -a ${c.name} -d ${fishq(c.summary)}`),
  ];
  for (const c of commands) {
    const when = `-n ${fishq(`__fish_seen_subcommand_from ${c.name}`)}`;
    if (c.words) lines.push(`complete -c tp ${when} -a ${fishq(c.words.join(" "))}`);
    for (const f of c.flags) {
      const ns = [f.short ? `-s ${f.short.slice(1)}` : "", f.long ? `-l ${f.long.slice(2)}` : ""].filter(Boolean);
      const value = !f.value ? "" : f.choices ? ` -x -a ${fishq(f.choices.join(" "))}` : f.file ? " -r -F" : " -x";
      lines.push(`complete -c tp ${when} ${ns.join(" ")}${value} -d ${fishq(f.summary)}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** Single-quoted for sh. */
function shq(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Single-quoted for fish. */
function fishq(s: string): string {
  return `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

/** A description zsh's _describe and _arguments take as it is: no brackets or colons, which they parse. */
function zshDesc(s: string): string {
  return s.replaceAll("[", "(").replaceAll("]", ")").replaceAll(":", " -").replaceAll("\\", "");
}
