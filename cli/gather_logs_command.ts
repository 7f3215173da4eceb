import { Command } from "@commander-js/extra-typings";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { statePaths } from "./daemon/state.ts";
import { redactJson, redactText } from "./redact.ts";
import { type TarFile, tarGz } from "./tar.ts";
import { VERSION } from "../base/version.ts";
import { errorMessage } from "../base/error_message.ts";

const MANAGER_TIMEOUT_MS = 3000;

/**
 * `tp gather-logs [-o FILE]`: one archive for a bug report: tp's and the system's versions, `tp status`, the daemon's
 * logs, and the manager's metrics when tp reaches it directly; tokens and other secrets redacted.
 */
export function gatherLogsCommand() {
  return new Command("gather-logs")
    .description(
      "Write one archive (.tar.gz) for a bug report: tp's and this system's versions, tp status, the daemon's logs, " +
        "and the traffic-manager's metrics when tp reaches it directly. Tokens and other secrets are redacted; " +
        "README.txt in it says what it holds and what could not be gathered.",
    )
    .option("-o, --output <file>", "the archive to write (default: tp-logs-<time>.tar.gz here)")
    .action(async (opts) => {
      const file = opts.output ?? `tp-logs-${new Date().toISOString().replace(/[:.]/g, "-")}.tar.gz`;
      const files = await gather();
      await Deno.writeFile(file, await tarGz(files), { mode: 0o600 });
      console.error(`tp: wrote ${file}: ${files.map((f) => f.name).join(", ")}`);
    });
}

async function gather(): Promise<TarFile[]> {
  const paths = statePaths();
  const enc = new TextEncoder();
  const notes: string[] = [];
  const secrets = [Deno.env.get("TP_TOKEN") ?? ""];
  const files: TarFile[] = [];
  const add = (name: string, text: string) => files.push({ name, data: enc.encode(text) });

  let status: Record<string, unknown> = { connected: false };
  try {
    const s = await controlRequest(paths.socket, { op: "status" }) as Record<string, unknown>;
    status = { connected: true, ...s }; // the daemon never sends its token
  } catch (e) {
    if (!(e instanceof NotRunningError)) notes.push(`status: ${errorMessage(e)}`);
  }
  const json = (v: unknown) => redactText(JSON.stringify(redactJson(v), null, 2) + "\n", secrets);
  add(
    "version.json",
    json({ tp: VERSION, deno: Deno.version, os: Deno.build.os, arch: Deno.build.arch, kernel: Deno.osRelease() }),
  );
  add("status.json", json(status));

  for (const log of [paths.log, `${paths.log}.1`]) {
    try {
      add(log.slice(log.lastIndexOf("/") + 1), redactText(await Deno.readTextFile(log), secrets));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) notes.push(`${log}: ${errorMessage(e)}`);
      else if (log === paths.log) notes.push(`${log}: no such file (the daemon has not run with this state directory)`);
    }
  }

  const managerUrl = ((status.manager as { url?: string } | undefined)?.url) ??
    ((status.settings as { managerUrl?: string } | undefined)?.managerUrl);
  if (managerUrl) {
    try {
      const res = await fetch(new URL("/metrics", managerUrl), { signal: AbortSignal.timeout(MANAGER_TIMEOUT_MS) });
      add("manager-metrics.txt", redactText(await res.text(), secrets));
    } catch (e) {
      notes.push(`the manager's metrics at ${managerUrl}/metrics: ${errorMessage(e)}`);
    }
  } else {
    notes.push("the manager's metrics: tp reaches no manager directly (not connected, or through Kubernetes)");
  }
  add(
    "README.txt",
    `tp gather-logs, ${new Date().toISOString()}: ${files.map((f) => f.name).join(", ")}.\n` +
      "Tokens and other secrets are replaced by (set) or (redacted).\n" +
      (notes.length ? `Not gathered:\n${notes.map((n) => `- ${redactText(n, secrets)}`).join("\n")}\n` : ""),
  );
  return files;
}
