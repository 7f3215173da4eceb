/**
 * The manager's token on the workstation: read from a file as the user who runs tp, and the warnings where it could
 * leak. It never leaves the daemon once there (tp status shows "(set)"), and the background daemon gets it in
 * TP_TOKEN, not on its command line.
 */
import { UsageError } from "./errors.ts";

/** The token in a file (its first line, without the line break), read as the user who runs tp. */
export async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`--token-file: cannot read "${path}": ${(e as Error).message}`);
  }
  const token = text.split(/\r?\n/)[0]!.trim();
  if (!token) throw new UsageError(`--token-file: "${path}" holds no token on its first line`);
  return token;
}

/**
 * Where the token could leak: on the command line of a daemon that stays up (every user's `ps` shows it for hours),
 * or in the clear to a manager on another machine (http:// is h2c; loopback never leaves the machine).
 */
export function tokenWarnings(
  settings: { token: string; managerUrl: string },
  how: { onArgv: boolean; foreground: boolean },
): string[] {
  if (!settings.token) return [];
  const out: string[] = [];
  if (how.onArgv && how.foreground) {
    out.push(
      "--token is on the command line of a daemon that stays running, where every user of this machine can read " +
        "it (ps): pass it in TP_TOKEN or --token-file instead",
    );
  }
  if (settings.managerUrl.startsWith("http://")) {
    const host = new URL(settings.managerUrl).hostname.replace(/^\[|\]$/g, "");
    if (!isLoopback(host)) {
      out.push(
        `sending the token to ${host} over plain http://, unencrypted: anyone on the network path can read it; ` +
          "use https://, or reach the manager through the Kubernetes API server (leave out --manager-url)",
      );
    }
  }
  return out;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || /^127\./.test(host) || host === "::1";
}
