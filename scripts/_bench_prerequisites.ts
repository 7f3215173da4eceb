/** What scripts/bench.ts needs on the machine: root, and the tools each path it runs uses (with their packages). */
import type { PathName } from "./_bench_run.ts";

/** Each tool the bench runs and the Debian package that has it. */
const TOOLS: [string, string][] = [
  ["ip", "iproute2"],
  ["curl", "curl"],
  ["dnsmasq", "dnsmasq-base"],
  ["iperf3", "iperf3"],
  ["wrk", "wrk"],
  ["dnsperf", "dnsperf"],
  ["sshuttle", "sshuttle"],
  ["sshd", "openssh-server"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
  ["python3", "python3"],
];

/** The path of `tool` in PATH (or /usr/sbin, /sbin), or null. */
export function which(tool: string): string | null {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    try {
      if (Deno.statSync(`${d}/${tool}`).isFile) return `${d}/${tool}`;
    } catch { /* not here */ }
  }
  return null;
}

/** Throws naming the Debian packages to install unless all that the `paths` measured need is here. */
export function checkPrerequisites(paths: PathName[]): void {
  if (Deno.uid() !== 0) throw new Error("scripts/bench needs root (network namespaces, a TUN device, routes)");
  const missing = new Set<string>();
  for (const [tool, pkg] of TOOLS) {
    if (tool === "sshuttle" || tool === "sshd" || tool === "ssh" || tool === "ssh-keygen" || tool === "python3") {
      if (!paths.includes("sshuttle")) continue;
    }
    if (!which(tool)) missing.add(`${pkg} (for ${tool})`);
  }
  if (paths.includes("sshuttle") && !which("nft") && !which("iptables")) missing.add("nftables or iptables");
  if (missing.size) {
    throw new Error(
      `scripts/bench needs these Debian packages: ${[...missing].join(", ")}.\n` +
        `  apt-get install -y ${[...missing].map((m) => m.split(" ")[0]).join(" ")}`,
    );
  }
}
