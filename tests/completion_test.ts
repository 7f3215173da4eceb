/** `tp completion bash|zsh|fish`: each script loads in its shell and completes tp's commands, flags and values. */
import assert from "node:assert/strict";
import { exec, requireTools, ROOT } from "./lab.ts";

const env = () => ({ ...Deno.env.toObject(), PATH: `${ROOT}/scripts:${Deno.env.get("PATH")}` });

/** What bash's completion offers for a command line ending at its last word (COMP_WORDS, as a TAB there sets it). */
async function bashComplete(...words: string[]): Promise<string[]> {
  const script = `source <(tp completion bash) || exit 9
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}
complete -p tp >/dev/null && _tp_completion && printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await exec(["bash", "-c", script], { env: env(), timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

Deno.test("the bash completion loads and completes tp con<TAB>, flags, their values and the shells", async () => {
  requireTools("bash");
  assert.deepEqual(await bashComplete("tp", "con"), ["connect", "config"]);
  assert.deepEqual(await bashComplete("tp", "conn"), ["connect"]);
  assert.deepEqual(await bashComplete("tp", "connect", "--man"), ["--manager-namespace", "--manager-url"]);
  assert.deepEqual(await bashComplete("tp", "status", "-o", ""), ["text", "json"]);
  assert.deepEqual(await bashComplete("tp", "completion", ""), ["bash", "zsh", "fish", "--help"]);
  assert.deepEqual(await bashComplete("tp", "help", "sta"), ["status"]);
  assert.ok((await bashComplete("tp", "connect", "--", "tru")).includes("true"), "commands after --");
});

Deno.test("the fish completion loads and completes tp con<TAB> and flag values", async () => {
  requireTools("fish");
  const r = await exec([
    "fish",
    "--no-config",
    "-c",
    'tp completion fish | source; and complete -C "tp con"; and complete -C "tp status -o "',
  ], { env: env(), timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  const offered = r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]);
  assert.deepEqual(offered, ["config", "connect", "json", "text"]);
});

Deno.test("the zsh completion parses, loads after compinit and is registered for tp", async () => {
  requireTools("zsh");
  const tmp = await Deno.makeTempDir({ prefix: "tp-zsh-" });
  try {
    const r = await exec([
      "zsh",
      "-f",
      "-c",
      `tp completion zsh > ${tmp}/_tp && zsh -n ${tmp}/_tp && autoload -Uz compinit && compinit -u -d ${tmp}/dump && ` +
      `source ${tmp}/_tp && print -r -- \${_comps[tp]}`,
    ], { env: env(), timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "_tp");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
