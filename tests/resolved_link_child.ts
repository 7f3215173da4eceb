/**
 * Run by tests/dns_resolved_real_test.ts inside the real systemd-resolved's namespace (tests/resolved_ns.ts):
 * reads what resolved holds for a link with resolvectl, configures the link with configureResolved() (over the bus at
 * `busAddress`, or with `resolvectl` when that bus cannot be reached), reads again, reverts, reads again, and prints
 * one JSON line: `{ via, before, applied, reverted }`, the last three LinkViews.
 *
 * deno run -A tests/resolved_link_child.ts '{"settings": {...}, "busAddress": "...", "resolvectl": "..."}'
 */
import { configureResolved, type LinkDnsSettings } from "../cli/dns/resolved.ts";

export interface LinkChildOptions {
  settings: LinkDnsSettings;
  busAddress: string;
  resolvectl: string;
}

/** What `resolvectl dns|domain|default-route|dnssec LINK` print after "Link N (name):", its wrapped lines joined. */
export interface LinkView {
  dns: string;
  domain: string;
  defaultRoute: string;
  dnssec: string;
}

async function view(resolvectl: string, link: string): Promise<LinkView> {
  const one = async (verb: string) => {
    const out = await new Deno.Command(resolvectl, { args: [verb, link], stdin: "null", stderr: "inherit" }).output();
    if (!out.success) throw new Error(`resolvectl ${verb} ${link} failed (exit ${out.code})`);
    return new TextDecoder().decode(out.stdout).replace(/^[^:]*\):/, "").trim().replace(/\s+/g, " ");
  };
  return {
    dns: await one("dns"),
    domain: await one("domain"),
    defaultRoute: await one("default-route"),
    dnssec: await one("dnssec"),
  };
}

if (import.meta.main) {
  const o = JSON.parse(Deno.args[0] ?? "{}") as LinkChildOptions;
  const before = await view(o.resolvectl, o.settings.link);
  const link = await configureResolved(o.settings, { busAddress: o.busAddress, resolvectl: o.resolvectl });
  const applied = await view(o.resolvectl, o.settings.link);
  await link.revert();
  const reverted = await view(o.resolvectl, o.settings.link);
  console.log(JSON.stringify({ via: link.via, before, applied, reverted }));
}
