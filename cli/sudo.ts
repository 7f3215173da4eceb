/**
 * Whether this user can start tp's root daemon through sudo, found out before trying (`sudo --non-interactive true`),
 * so a missing sudo or a password nobody can type ends in one line naming the cause and the fix, not in a daemon
 * that "exited before it was ready".
 */

const SUDO_CHECK_MS = 10_000;

/** Null when sudo will work (now, or after a password typed at this terminal); else the cause and the fix. */
export async function sudoProblem(opts: { terminal: boolean }): Promise<string | null> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("sudo", {
      args: ["--non-interactive", "true"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(SUDO_CHECK_MS),
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return "the daemon needs root to create a network interface, and sudo is not installed (not on PATH): " +
        "run tp connect as root, or install sudo";
    }
    throw e;
  }
  if (out.success || opts.terminal) return null; // at a terminal, sudo asks for the password itself
  const said = new TextDecoder().decode(out.stderr).trim().split("\n")[0]!.replace(/^sudo: /, "");
  if (/password is required/i.test(said)) {
    return "the daemon needs root, and sudo asks for a password but there is no terminal to type it at: run " +
      "tp connect in a terminal, run sudo -v first, or run tp connect as root";
  }
  return `the daemon needs root, and sudo refused to start it (sudo: ${said || `exit ${out.code}`}): run tp ` +
    "connect as root, or ask for sudo rights";
}
