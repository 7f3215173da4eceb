/**
 * The pod's resolver as the agent finds it: the first nameserver of /etc/resolv.conf and the entries of /etc/hosts,
 * read when the first query comes (the kubelet writes both before the containers start).
 */
import { DnsForwarder } from "../manager/dns.ts";
import { firstNameserver } from "../manager/config.ts";
import { parseHosts, PodResolver } from "./dns.ts";

export function podResolver(namespace: string, files = { resolvConf: "/etc/resolv.conf", hosts: "/etc/hosts" }) {
  return (clusterDomain: string): PodResolver => {
    const read = (p: string) => {
      try {
        return Deno.readTextFileSync(p);
      } catch {
        return "";
      }
    };
    const server = firstNameserver(read(files.resolvConf));
    return new PodResolver(
      server ? new DnsForwarder(server) : undefined,
      parseHosts(read(files.hosts)),
      namespace,
      clusterDomain,
    );
  };
}
