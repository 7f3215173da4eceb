/**
 * A Service's clusterIP, as the API server double allocates it: a requested address is checked against the service
 * CIDRs (out of range, kube-apiserver's 422 naming the valid range), no address gets the next one from the first CIDR.
 * A pure function of the allocator's state (the CIDRs and the next number), which the caller keeps; with the address
 * arithmetic it needs (`inCidr`, for IPv4 and IPv6).
 */
import net from "node:net";
import type { Obj } from "./k8s_apiserver_objects.ts";
import { HttpError, invalid } from "./k8s_apiserver_status.ts";

/**
 * Sets `svc`'s spec.clusterIP and clusterIPs (a headless "None" stays as it is) and returns the allocator's next
 * number: `next` + 1 when an address was allocated, else `next`. Throws HttpError 422 for a clusterIP out of range.
 */
export function allocateClusterIp(svc: Obj, serviceCidrs: string[], next: number): number {
  const spec = (svc.spec ??= {}) as Record<string, unknown>;
  const ip = spec.clusterIP as string | undefined;
  if (ip === "None") return next;
  if (ip) {
    const range = serviceCidrs.find((c) => inCidr(ip, c));
    if (!range) {
      const v4 = !ip.includes(":");
      const valid = serviceCidrs.find((c) => !c.includes(":") === v4);
      if (!valid) {
        throw new HttpError(
          422,
          invalid(
            "Service",
            svc.metadata.name as string,
            "spec.ipFamilies[0]",
            `Invalid value: "${v4 ? "IPv4" : "IPv6"}": not configured on this cluster`,
          ),
        );
      }
      // The wording of kube-apiserver's ipallocator ErrNotInRange, wrapped by the service REST storage.
      throw new HttpError(
        422,
        invalid(
          "Service",
          svc.metadata.name as string,
          "spec.clusterIPs",
          `Invalid value: []string{"${ip}"}: failed to allocate IP ${ip}: the provided IP (${ip}) is not in the ` +
            `valid range. The range of valid IPs is ${valid}`,
        ),
      );
    }
    spec.clusterIPs = [ip];
    return next;
  }
  const base = serviceCidrs[0]!.split("/")[0]!;
  const parts = base.split(".").map(Number);
  const a = `${parts[0]}.${parts[1]}.${parts[2]! + (next >> 8)}.${next & 255}`;
  spec.clusterIP = a;
  spec.clusterIPs = [a];
  return next + 1;
}

/** Whether IPv4 or IPv6 `ip` is in `cidr`. */
export function inCidr(ip: string, cidr: string): boolean {
  const [base, bitsText] = cidr.split("/");
  const a = ipBytes(ip);
  const b = ipBytes(base!);
  if (!a || !b || a.length !== b.length) return false;
  let bits = Number(bitsText);
  for (let i = 0; i < a.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

function ipBytes(ip: string): number[] | undefined {
  if (net.isIPv4(ip)) return ip.split(".").map(Number);
  if (!net.isIPv6(ip)) return undefined;
  const [l, r] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const left = l ? l.split(":") : [];
  const right = r ? r.split(":") : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}
