/**
 * A stand-in for the daemon's resolv.conf work, for tests/dns_guard_test.ts: starts the real guard (the shell, which
 * runs the real `tp _restore-dns`), points the resolv.conf at PATH at tp, prints one JSON line ({ guard: pid }), then
 * obeys stdin lines: `quit` restores the file and disarms the guard, as the daemon's `tp quit` does.
 * Usage: deno run -A tests/dns_guard_child.ts PATH STATE_DIR
 */
import { applyResolvConf, restoreResolvConf } from "../cli/dns/resolv_conf.ts";
import { restoreCommand, startResolvConfGuard } from "../cli/dns/resolv_guard.ts";
import { selfArgv } from "../cli/process.ts";

const [path, stateDir] = Deno.args as [string, string];
const guard = startResolvConfGuard(restoreCommand(selfArgv(), stateDir, Deno.pid));
await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.0.255", searchDomains: ["svc.cluster.local"] });
console.log(JSON.stringify({ guard: guard.pid }));
for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  if (line.includes("quit")) {
    const r = await restoreResolvConf({ stateDir });
    await guard.disarm();
    console.log(JSON.stringify({ restore: r.action }));
    break;
  }
}
