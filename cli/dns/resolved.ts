/**
 * systemd-resolved mode: when resolved runs, tp leaves /etc/resolv.conf alone and configures its own link instead,
 * as split DNS: the link gets tp's DNS address, the search domains `<ns>.svc.<domain> svc.<domain> <domain>`, and
 * routing-only domains (`~cluster.local`, `~<ns>`, `~svc`, the reverse zones of the cluster's subnets). resolved then
 * sends only those names to tp; every other name keeps going where it went before.
 *
 * tp drives resolved with `resolvectl` (resolvectl(1): `dns`, `domain`, `default-route`, `dnssec`, `revert`).
 * Talking DBus directly (org.freedesktop.resolve1 SetLinkDNS, SetLinkDomains) would avoid the executable; it is not
 * implemented yet. When the TUN device goes away its per-link settings go with it, so `revert` on quit is belt and
 * braces, and a crash leaves nothing behind.
 *
 * Upstreams in this mode are not the stub 127.0.0.53 (a cluster-looking name tp passes upstream would come back to
 * tp through the routing domains): they are the uplink servers resolved lists in /run/systemd/resolve/resolv.conf.
 */
import { parseResolvConf } from "./resolv_conf.ts";

export interface ResolvedDetection {
  running: boolean;
  /** The resolvectl executable found on PATH, or null. */
  resolvectl: string | null;
  /** Why it is (not) used, for the log. */
  reason: string;
}

export interface DetectOptions {
  /** resolved's runtime directory. Default /run/systemd/resolve. */
  runDir?: string;
  /** The PATH to look for resolvectl in. Default $PATH. */
  path?: string;
}

function isDir(p: string): boolean {
  try {
    return Deno.statSync(p).isDirectory;
  } catch {
    return false;
  }
}

function findOnPath(name: string, path: string): string | null {
  for (const dir of path.split(":").filter(Boolean)) {
    try {
      const st = Deno.statSync(`${dir}/${name}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

/**
 * resolved counts as running when its runtime directory exists (it creates it at start, sd-resolved(8)) and
 * `resolvectl` is there to configure it.
 */
export function detectResolved(options: DetectOptions = {}): ResolvedDetection {
  const runDir = options.runDir ?? "/run/systemd/resolve";
  const resolvectl = findOnPath("resolvectl", options.path ?? Deno.env.get("PATH") ?? "");
  if (!isDir(runDir)) return { running: false, resolvectl, reason: `${runDir} does not exist` };
  if (!resolvectl) return { running: false, resolvectl, reason: `${runDir} exists but resolvectl is not on PATH` };
  return { running: true, resolvectl, reason: `${runDir} exists and ${resolvectl} is on PATH` };
}

export interface LinkDnsSettings {
  /** The TUN device's name. */
  link: string;
  dnsAddress: string;
  /** Search domains, in order (`<ns>.svc.<domain>`, `svc.<domain>`, `<domain>`). */
  searchDomains: readonly string[];
  /** Routing-only domains, without the `~` (NameRouter.routingDomains()). */
  routingDomains: readonly string[];
}

/** The resolvectl command lines that configure the link, in order. */
export function resolvedApplyCommands(s: LinkDnsSettings, resolvectl = "resolvectl"): string[][] {
  const routing = s.routingDomains.filter((d) => !s.searchDomains.includes(d)).map((d) => `~${d}`);
  return [
    [resolvectl, "dns", s.link, s.dnsAddress],
    [resolvectl, "domain", s.link, ...s.searchDomains, ...routing],
    // Only the domains above go to tp; this link is never the default route for other names.
    [resolvectl, "default-route", s.link, "false"],
    // The cluster's DNS does not sign its zone: validation on this link would fail every answer.
    [resolvectl, "dnssec", s.link, "no"],
  ];
}

/** The resolvectl command line that undoes them. */
export function resolvedRevertCommands(link: string, resolvectl = "resolvectl"): string[][] {
  return [[resolvectl, "revert", link]];
}

async function runAll(commands: string[][]): Promise<void> {
  for (const [cmd, ...args] of commands) {
    const out = await new Deno.Command(cmd!, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim();
      throw new Error(`\`${[cmd, ...args].join(" ")}\` failed (exit ${out.code}): ${err}`);
    }
  }
}

/** Configures the link. On a failure part-way, the link is reverted before the error is thrown. */
export async function applyResolved(s: LinkDnsSettings, resolvectl = "resolvectl"): Promise<void> {
  try {
    await runAll(resolvedApplyCommands(s, resolvectl));
  } catch (e) {
    await runAll(resolvedRevertCommands(s.link, resolvectl)).catch(() => {});
    throw e;
  }
}

export async function revertResolved(link: string, resolvectl = "resolvectl"): Promise<void> {
  await runAll(resolvedRevertCommands(link, resolvectl));
}

/** The uplink nameservers resolved uses (its non-stub resolv.conf), as tp's upstreams. */
export async function resolvedUpstreams(runDir = "/run/systemd/resolve"): Promise<string[]> {
  const conf = parseResolvConf(await Deno.readTextFile(`${runDir}/resolv.conf`));
  return conf.nameservers.filter((ns) => !ns.startsWith("127.0.0.5"));
}
